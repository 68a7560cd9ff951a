"""The INSi client: search by carte Vitale, search by traits, verification of a known INS, over TLS.

The messages come from ``agent.ins.soap``; this module adds the signed assertion (the professional's CPS, or the
structure certificate), TLS with client authentication, timeouts, and the mapping of failures:
``TransientRemoteError`` code ``insi_unreachable`` (network, timeout, 5xx) or ``insi_bad_answer``;
``PermanentRemoteError`` ``insi_refused`` (a SOAP fault: INSi understood and refused). An answer whose INS has a
wrong key or an OID this configuration does not accept is refused too: it must never reach a patient record.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from lxml import etree

from agent.clock import Clock
from agent.domain.ins import Ins, accepted_oids, key_is_valid
from agent.domain.signing import Signer
from agent.domain.traits import IdentityTraits
from agent.errors import ConfigError, PermanentRemoteError, TransientRemoteError
from agent.ins import soap
from agent.ins.soap import ACTION_TRAITS, ACTION_VITALE, CallContext, InsiAnswer, LpsInfo, VitaleQuery
from agent.logs import get_logger
from agent.xml.signing import sign_enveloped

log = get_logger("insi")


@dataclass(frozen=True, slots=True)
class InsiSettings:
    url: str
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    connect_timeout: float = 5.0
    timeout: float = 15.0
    allow_test_oids: bool = False
    lps: LpsInfo = field(default_factory=lambda: LpsInfo(idam="", name="relais", version="0", instance=""))
    structure_id: str = ""


def tls_context(settings: InsiSettings) -> ssl.SSLContext:
    """Server checked against ``ca_file`` (the system store when empty), client authenticated by its certificate."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"certificats INSi illisibles : {exc}", key="insi.client_cert") from exc
    return context


class InsiClient:
    def __init__(self, settings: InsiSettings, clock: Clock, *, context: ssl.SSLContext | None = None,
                 structure_signer: Signer | None = None,
                 on_connectivity: Callable[[bool], object] | None = None) -> None:
        if not settings.url.startswith("https://"):
            raise ConfigError("l'URL du téléservice INSi doit être en https://", key="insi.url")
        self.settings = settings
        # Signs the assertion when no CPS is logged in (the structure certificate), if configured.
        self.structure_signer = structure_signer
        self._clock = clock
        self._context = context or tls_context(settings)
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
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._context, limit=8),
                                                  timeout=timeout)
        return self._session

    async def search_traits(self, traits: IdentityTraits, signer: Signer, emitter: str) -> InsiAnswer:
        """rechercherInsAvecTraitsIdentite with normalised traits (``agent.domain.traits.parse_traits``)."""
        return await self._call(ACTION_TRAITS, soap.traits_body(traits), signer, emitter)

    async def search_vitale(self, query: VitaleQuery, signer: Signer, emitter: str) -> InsiAnswer:
        """rechercherInsAvecCarteVitale for one beneficiary of the card."""
        return await self._call(ACTION_VITALE, soap.vitale_body(query), signer, emitter)

    async def verify(self, ins: Ins, traits: IdentityTraits, signer: Signer, emitter: str) -> tuple[str, InsiAnswer]:
        """Verification of a known INS (the "vérification unitaire"): a search by the traits, compared with it.

        ``match`` when INSi returns this INS as the active one; ``mismatch`` when it returns another person or
        when this INS is only a former one (the active INS replaced it); ``not_found`` / ``several`` otherwise.
        """
        answer = await self.search_traits(traits, signer, emitter)
        if answer.result != "found" or answer.ins is None:
            return answer.result, answer
        if answer.ins.value == ins.value:
            return "match", answer
        return "mismatch", answer

    async def _call(self, action: str, body: etree._Element, signer: Signer, emitter: str) -> InsiAnswer:
        message_id = str(uuid.uuid4())
        ctx = CallContext(message_id=message_id, now=self._clock.now(), emitter=emitter, lps=self.settings.lps,
                          structure_id=self.settings.structure_id)
        assertion = soap.build_assertion(ctx, f"_{uuid.uuid4().hex}")
        # A CPS may take a second to sign: never on the event loop.
        signed = await asyncio.to_thread(sign_enveloped, assertion, signer)
        envelope = soap.build_envelope(action, ctx, body, signed)
        data = await self._post(action, envelope)
        answer = soap.parse_answer(data)
        self._check(answer)
        return answer

    async def _post(self, action: str, envelope: bytes) -> bytes:
        headers = {"Content-Type": f'{soap.CONTENT_TYPE}; action="{action}"'}
        try:
            async with self._http().post(self.settings.url, data=envelope, headers=headers) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > soap.MAX_ANSWER_BYTES:
                        raise TransientRemoteError("Réponse INSi trop volumineuse.", service="insi",
                                                   code="insi_bad_answer")
                    chunks.append(chunk)
                data = b"".join(chunks)
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
