"""The demo's virtual cards: an in-process simulated reader with a CPS and a carte Vitale to insert and pull.

``SimulatedReaders`` is a reader backend like PC/SC: the card service identifies and reads the cards through the
same APDUs (the applets of ``cards_vpcd``), so the demo exercises the real card code. The demo doctor's CPS is a
software key with a test certificate from the sandbox PKI (PIN 1234, 3 attempts); the demo carte Vitale carries the
INSi test identities of ``identities.DEMO_VITALE``. ``/_sandbox/cards/cps`` and ``/_sandbox/cards/vitale`` insert
and pull them (agent only, in demo mode); ``/_sandbox/cards/vitale`` ``{inserted: true, card: "cnda-insi-01"}``
inserts one of the CNDA's test cards instead (read from the reference kit, ``relais_sandbox/cnda.py``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.api.spec import RouteTable, json_response
from agent.cards.cps import CpsToken, Transmit
from agent.cards.readers import ReaderListener
from agent.cards.software import SoftwareCpsToken
from agent.domain.apdu import Command, Response
from agent.domain.vitale import VitaleBeneficiary
from agent.errors import InvalidInput, Unavailable
from agent.softkey import SoftwareSigner
from relais_sandbox.cards_vpcd import Applet, CpsApplet, VitaleApplet
from relais_sandbox.identities import DEMO_CARD, DEMO_VITALE, DemoBeneficiary, VirtualCard
from relais_sandbox.pki import SandboxPki

READERS = ("Lecteur virtuel Relais 0", "Lecteur virtuel Relais 1")
CPS_READER, VITALE_READER = READERS
DEMO_PIN = "1234"

# The author of the ANS example documents (CI-SIS ExemplesCDA): national id 801234567897, i.e. RPPS 01234567897.
DEMO_DOCTOR = {"rpps": "01234567897", "family_name": "MULLER", "given_name": "CHARLES",
               "profession": "10", "specialty": "SM40"}


def card_beneficiaries(beneficiaries: tuple[DemoBeneficiary, ...]) -> list[VitaleBeneficiary]:
    return [VitaleBeneficiary(index=b.index, nir=b.nir, family_name=b.family_name, given_names=b.given_names,
                              birth_name=b.birth_name, birth_date=b.birth_date, birth_rank=b.birth_rank,
                              quality=b.quality) for b in beneficiaries]


def demo_beneficiaries() -> list[VitaleBeneficiary]:
    return card_beneficiaries(DEMO_VITALE)


def known_cards() -> dict[str, VirtualCard]:
    """The cards the sandbox can insert by name: the demo card, and the CNDA's when the reference kit is there."""
    from relais_sandbox import cnda

    cards = {DEMO_CARD.key: DEMO_CARD}
    reference = cnda.reference_dir()
    if reference is not None:
        cards.update(cnda.load(reference).cards)
    return cards


def demo_cps_signer(pki: SandboxPki) -> SoftwareSigner:
    """The demo doctor's key and certificate (cached in the sandbox PKI folder)."""
    d = DEMO_DOCTOR
    credentials = pki.issue(
        "demo-cps", common_name=f"{d['given_name'].title()} {d['family_name']}", client=True,
        extra_subject=[
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "8" + d["rpps"]),
            x509.NameAttribute(NameOID.SURNAME, d["family_name"]),
            x509.NameAttribute(NameOID.GIVEN_NAME, d["given_name"]),
            x509.NameAttribute(NameOID.TITLE, d["profession"]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, d["specialty"]),
        ],
    )
    return SoftwareSigner.from_pem(credentials.key_path.read_bytes(), credentials.cert_path.read_bytes())


class SimulatedReaders:
    """Two virtual readers in the agent's process; callbacks run in the caller's thread."""

    name = "simulated"

    def __init__(self) -> None:
        self._listener: ReaderListener | None = None
        self._cards: dict[str, Applet] = {}
        self._tokens: dict[str, CpsToken] = {}
        self._lock = threading.Lock()

    def start(self, listener: ReaderListener) -> None:
        self._listener = listener
        listener.service_changed(True)
        listener.readers_changed(list(READERS))

    def stop(self) -> None:
        self._listener = None

    def insert(self, reader: str, applet: Applet, token: CpsToken | None = None) -> None:
        self.remove(reader)
        with self._lock:
            self._cards[reader] = applet
            if token is not None:
                self._tokens[reader] = token
        if self._listener is not None:
            self._listener.card_inserted(reader, applet.atr)

    def remove(self, reader: str) -> bool:
        with self._lock:
            applet = self._cards.pop(reader, None)
            self._tokens.pop(reader, None)
        if applet is not None and self._listener is not None:
            self._listener.card_removed(reader)
        return applet is not None

    def has_card(self, reader: str) -> bool:
        return reader in self._cards

    def token_for(self, reader: str) -> CpsToken | None:
        return self._tokens.get(reader)

    @contextmanager
    def transaction(self, reader: str) -> Iterator[Transmit]:
        applet = self._cards.get(reader)
        if applet is None:
            raise Unavailable("La carte a été retirée pendant sa lecture : réinsérez-la.", code="card_removed")

        def transmit(command: Command) -> Response:
            return Response.decode(applet.process(command.encode()))

        yield transmit


class VirtualCards:
    """The demo's two cards on the simulated reader, and their control routes."""

    def __init__(self, readers: SimulatedReaders, pki: SandboxPki) -> None:
        self.readers = readers
        self._signer = demo_cps_signer(pki)
        # One card for the whole demo: its PIN counter survives pulling and inserting, as on a real card.
        self.cps_token = SoftwareCpsToken(self._signer, DEMO_PIN)

    def insert_cps(self) -> None:
        self.readers.insert(CPS_READER, CpsApplet(), self.cps_token)

    def insert_vitale(self, beneficiaries: list[VitaleBeneficiary] | None = None, *,
                      card: VirtualCard | None = None) -> None:
        """A custom card (its serial derived from its content), a named one, or the demo card."""
        if beneficiaries:
            applet = VitaleApplet(beneficiaries)
        else:
            chosen = card or DEMO_CARD
            applet = VitaleApplet(card_beneficiaries(chosen.beneficiaries), serial=chosen.serial,
                                  validity_start=chosen.validity_start)
        self.readers.insert(VITALE_READER, applet)

    def apply(self, cards: str) -> None:
        """``relais demo --cards both|cps|vitale|none``."""
        if cards in ("both", "cps"):
            self.insert_cps()
        if cards in ("both", "vitale"):
            self.insert_vitale()

    def register_routes(self, table: RouteTable) -> None:
        async def cps(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            inserted = _flag(body)
            await asyncio.to_thread(self.insert_cps if inserted else lambda: self.readers.remove(CPS_READER))
            return web.json_response({"card": "cps", "inserted": inserted, "reader": CPS_READER})

        async def vitale(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            inserted = _flag(body)
            beneficiaries = _beneficiaries(body.get("beneficiaries"))
            card = None
            if body.get("card") is not None:
                card = known_cards().get(str(body["card"]))
                if card is None:
                    raise InvalidInput.field("card", "Carte inconnue du bac à sable (demo, cnda-insi-01, "
                                                     "cnda-insi-04 quand le kit de référence est présent).")
            if inserted:
                await asyncio.to_thread(lambda: self.insert_vitale(beneficiaries, card=card))
            else:
                await asyncio.to_thread(self.readers.remove, VITALE_READER)
            return web.json_response({"card": "vitale", "inserted": inserted, "reader": VITALE_READER})

        table.post("/_sandbox/cards/cps", cps, summary="Insérer ou retirer la carte CPS virtuelle", tag="sandbox",
                   request_schema={"type": "object", "required": ["inserted"],
                                   "properties": {"inserted": {"type": "boolean"}}},
                   responses={200: json_response("État de la carte virtuelle")})
        table.post("/_sandbox/cards/vitale", vitale, summary="Insérer ou retirer la carte Vitale virtuelle",
                   tag="sandbox",
                   request_schema={"type": "object", "required": ["inserted"], "properties": {
                       "inserted": {"type": "boolean"},
                       "card": {"type": "string", "description": "demo, cnda-insi-01, cnda-insi-04"},
                       "beneficiaries": {"type": "array", "maxItems": 12, "items": BENEFICIARY_SCHEMA}}},
                   responses={200: json_response("État de la carte virtuelle")})


BENEFICIARY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["nir", "family_name", "birth_date"],
    "properties": {"nir": {"type": "string"}, "family_name": {"type": "string"},
                   "given_names": {"type": "array", "items": {"type": "string"}},
                   "birth_name": {"type": "string"}, "birth_date": {"type": "string"},
                   "birth_rank": {"type": "integer"}, "quality": {"type": "string"}},
}


def _flag(body: dict[str, Any]) -> bool:
    value = body.get("inserted")
    if not isinstance(value, bool):
        raise InvalidInput.field("inserted", "« inserted » doit valoir true ou false.")
    return value


def _beneficiaries(raw: Any) -> list[VitaleBeneficiary] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or len(raw) > 12:
        raise InvalidInput.field("beneficiaries", "Une liste de 1 à 12 bénéficiaires est attendue.")
    out = []
    for i, item in enumerate(raw):
        try:
            given = item.get("given_names", [])
            if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
                raise TypeError
            out.append(VitaleBeneficiary(
                index=i, nir=str(item["nir"]), family_name=str(item["family_name"]).upper(),
                given_names=[g.upper() for g in given], birth_name=str(item.get("birth_name", "")).upper(),
                birth_date=str(item["birth_date"]), birth_rank=int(item.get("birth_rank", 1)),
                quality=str(item.get("quality", "00"))))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput.field(f"beneficiaries/{i}", "Bénéficiaire incomplet : nir, family_name et "
                                     "birth_date (AAAA-MM-JJ) sont requis.") from exc
    try:
        from agent.domain.vitale import encode_beneficiaries, parse_beneficiaries

        parse_beneficiaries(encode_beneficiaries(out))
    except ValueError as exc:
        raise InvalidInput.field("beneficiaries", "Bénéficiaires invalides (NIR, date AAAA-MM-JJ).") from exc
    return out
