"""The INSi client: search by carte Vitale, search by traits, verification of a known INS, over TLS.

Two ways in, each with its own URL (``InsiSettings``), as the CNAM publishes them:

- the CPx endpoint (``cpx_url``, e.g. ``https://qualiflps.services-ps.ameli.fr/lps``): the professional's CPS
  signs the assertions; TLS authenticates the server only;
- the mutual-TLS endpoint (``url``, e.g. ``https://qualiflps-services-ps-tlsm.ameli.fr/lps``): the structure's
  INSI-AUTO / INSI-MANU certificate authenticates the workstation in TLS and signs the assertion.

When ``cpx_url`` is empty, CPS calls go to ``url`` too (one endpoint for both, as before these were told apart).

The messages come from ``agent.ins.soap`` and ``agent.ins.assertion``; this module signs the assertions (a CPS
may take a second: never on the event loop), posts them, and maps failures: ``TransientRemoteError``
``insi_unreachable`` (network, timeout, 5xx without a SOAP fault), ``insi_bad_answer``,
``insi_temporarily_unavailable`` (a CNAM fault marked temporary: ``siram_40``...; retried ``transient_retries``
times first); ``PermanentRemoteError`` ``insi_refused`` (a fault: INSi understood and refused). Faults carry
``remote`` = the CNAM's ``insi_NNN`` code, its severity and its message. An answer whose INS has a wrong key or an
OID this configuration does not accept is refused: it must never reach a patient record.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from lxml import etree

from agent.clock import Clock
from agent.domain.ins import accepted_oids, key_is_valid
from agent.domain.signing import Signer
from agent.domain.traits import IdentityTraits
from agent.errors import ConfigError, PermanentRemoteError, TransientRemoteError
from agent.frames import FrameTap, open_exchange
from agent.ins import soap
from agent.ins.assertion import ProfessionalIdentity, VitaleCardData, professional_assertion, vitale_assertion
from agent.ins.soap import ACTION_TRAITS, ACTION_VITALE, CallContext, InsiAnswer, LpsInfo, VitaleQuery
from agent.logs import get_logger
from agent.xml.signing import sign_enveloped

log = get_logger("insi")

Channel = Literal["cpx", "mtls"]


@dataclass(frozen=True, slots=True)
class InsiSettings:
    url: str  # the mutual-TLS endpoint (structure certificate); also the CPx one when cpx_url is empty
    cpx_url: str = ""
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    connect_timeout: float = 5.0
    timeout: float = 15.0
    allow_test_oids: bool = False
    lps: LpsInfo = field(default_factory=lambda: LpsInfo(idam="", name="relais", version="0", instance=""))
    structure_id: str = ""
    billing_id: str = ""
    amo_specialty: str = ""
    activity_sector: str = "SA07"
    cps_name_qualifier: str = ""
    structure_name_qualifier: str = ""
    transient_retries: int = 1
    retry_delay: float = 0.5


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls INSi: the signer of the assertions, the emitter of the contexts, and which endpoint."""

    signer: Signer
    emitter: str
    professional: ProfessionalIdentity
    channel: Channel


def tls_context(settings: InsiSettings, *, client_certificate: bool = True) -> ssl.SSLContext:
    """Server checked against ``ca_file`` (the system store when empty); on the mutual-TLS endpoint, the
    workstation authenticated by its certificate."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_certificate and settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"certificats INSi illisibles : {exc}", key="insi.client_cert") from exc
    return context


class InsiClient:
    frames: FrameTap | None = None  # the homologation journal, when build() sets it

    def __init__(self, settings: InsiSettings, clock: Clock, *, context: ssl.SSLContext | None = None,
                 structure_signer: Signer | None = None,
                 on_connectivity: Callable[[bool], object] | None = None) -> None:
        for key, url in (("insi.url", settings.url), ("insi.cpx_url", settings.cpx_url)):
            if url and not url.startswith("https://"):
                raise ConfigError("l'URL du téléservice INSi doit être en https://", key=key)
        if not (settings.url or settings.cpx_url):
            raise ConfigError("aucune URL du téléservice INSi", key="insi.url")
        self.settings = settings
        # Signs the assertion when no CPS is logged in (the structure certificate), if configured.
        self.structure_signer = structure_signer
        self._clock = clock
        self._mtls = context or tls_context(settings)
        self._server_only = context or tls_context(settings, client_certificate=False)
        self._session: aiohttp.ClientSession | None = None
        # None until the first call; the callback hears each change (the bus's connectivity.changed).
        self.reachable: bool | None = None
        self._on_connectivity = on_connectivity

    def _reached(self, up: bool) -> None:
        if self.reachable is not up:
            self.reachable = up
            if self._on_connectivity is not None:
                self._on_connectivity(up)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout, sock_connect=self.settings.connect_timeout)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8), timeout=timeout)
        return self._session

    def endpoint(self, channel: Channel) -> tuple[str, ssl.SSLContext]:
        if channel == "cpx" and self.settings.cpx_url:
            return self.settings.cpx_url, self._server_only
        if not self.settings.url:
            raise ConfigError("aucune URL INSi pour le certificat de structure (authentification mutuelle)",
                              key="insi.url")
        return self.settings.url, self._mtls

    async def search_traits(self, traits: IdentityTraits, caller: Caller) -> InsiAnswer:
        """One rechercherInsAvecTraitsIdentite with normalised traits; ``agent.ins.search`` plans the sequence."""
        return await self._call(ACTION_TRAITS, soap.traits_body(traits), caller)

    async def search_vitale(self, query: VitaleQuery, caller: Caller) -> InsiAnswer:
        """rechercherInsAvecCarteVitale for one beneficiary; the carte Vitale assertion is built now, at send time."""
        return await self._call(ACTION_VITALE, soap.vitale_body(query), caller, query)

    async def _call(self, action: str, body: etree._Element, caller: Caller,
                    coverage: VitaleQuery | None = None) -> InsiAnswer:
        attempt = 0
        while True:
            try:
                return await self._call_once(action, body, caller, coverage)
            except TransientRemoteError as exc:
                if exc.code != "insi_temporarily_unavailable" or attempt >= self.settings.transient_retries:
                    raise
                attempt += 1
                log.info("INSi momentanément indisponible : nouvelle tentative %d", attempt)
                await asyncio.sleep(self.settings.retry_delay)

    async def _call_once(self, action: str, body: etree._Element, caller: Caller,
                         coverage: VitaleQuery | None) -> InsiAnswer:
        now = self._clock.now()
        ctx = CallContext(message_id=str(uuid.uuid4()), now=now, emitter=caller.emitter, lps=self.settings.lps)
        unsigned = [professional_assertion(caller.professional, f"_{uuid.uuid4().hex}", now)]
        if coverage is not None:
            card = VitaleCardData(coverage.card_serial, coverage.insured_nir, coverage.birth_date, coverage.birth_rank)
            unsigned.append(vitale_assertion(card, caller.professional.issuer_dn, f"_{uuid.uuid4().hex}", now))
        signed = await asyncio.to_thread(lambda: [sign_enveloped(a, caller.signer) for a in unsigned])
        envelope = soap.build_envelope(action, ctx, body, signed, coverage)
        url, context = self.endpoint(caller.channel)
        answer = soap.parse_answer(await self._post(url, context, action, envelope))
        self._check(answer)
        return answer

    async def _post(self, url: str, context: ssl.SSLContext, action: str, envelope: bytes) -> bytes:
        headers = {"Content-Type": f'{soap.CONTENT_TYPE}; action="{action}"'}
        frame = open_exchange(self.frames, "insi", action, envelope, headers["Content-Type"])
        try:
            async with self._http().post(url, data=envelope, headers=headers, ssl=context) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > soap.MAX_ANSWER_BYTES:
                        raise TransientRemoteError("Réponse INSi trop volumineuse.", service="insi",
                                                   code="insi_bad_answer")
                    chunks.append(chunk)
                data = b"".join(chunks)
                frame.answered(data, status=response.status, content_type=response.headers.get("Content-Type", ""))
                if response.status >= 500 and b"Fault" not in data:
                    self._reached(False)
                    raise TransientRemoteError(f"Le téléservice INSi a répondu {response.status}.",
                                               service="insi", code="insi_unreachable")
                self._reached(True)
                if response.status >= 400 and b"Fault" not in data:
                    raise PermanentRemoteError(f"Le téléservice INSi a refusé la demande ({response.status}).",
                                               service="insi", code="insi_refused")
                return data
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("INSi injoignable : %s", type(exc).__name__)
            self._reached(False)
            raise TransientRemoteError("Le téléservice INSi est injoignable.", service="insi",
                                       code="insi_unreachable") from exc

    def _check(self, answer: InsiAnswer) -> None:
        oids = accepted_oids(allow_test_oids=self.settings.allow_test_oids)
        for ins in [answer.ins, *(h.ins for h in answer.history)]:
            if ins is None:
                continue
            if not key_is_valid(ins.value):
                raise TransientRemoteError("L'INSi a renvoyé un matricule INS dont la clé est fausse.",
                                           service="insi", code="insi_bad_answer")
            if ins.oid not in oids:
                raise PermanentRemoteError("L'INSi a renvoyé un INS dont l'OID n'est pas accepté par cette "
                                           "configuration (OID de test hors démonstration ?).",
                                           service="insi", code="insi_oid_refused")
