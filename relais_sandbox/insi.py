"""The INSi simulator: the téléservice's SOAP 1.2 over TLS on two loopback endpoints, played as the CNDA does.

- Two endpoints, as the CNAM has: the mutual-TLS one (``url``: the structure certificate authenticates the
  workstation) and the CPx one (``cpx_url``: TLS without client certificate, the CPS-signed assertion
  authenticates). Both demand what ``insi_checks`` says (signatures against the sandbox's test CA only).
- The people: the built-in identities of ``identities`` (always there, for the demo on a user's clone) and the
  CNDA's INSi test identities and cards read from the reference kit at start (``cnda``). It answers as INSi does:
  CR 00 with the active INS, its history and the reference traits; 01 when nobody matches; 02 when several match.
  ``Prenom`` matches the first birth given name or the whole list, as the public clients' sequences show.
- Answer injection, like the CNDA's injector: ``POST /_sandbox/insi/inject`` ``{answer: "CR01", after:
  "technical_error", times: 1}``: ``after`` "now" (the next calls), "first_call" (the first call is answered
  normally), "technical_error" (the next call gets a siram_40 fault first); ``answer`` CR00 (with ``identity``, a
  person's key), CR01, CR02, siram_40 (a temporary fault), siram_100 (software not authorised) or ``xml`` (a raw
  answer body, as the CNDA's injection files).
- ``GET /_sandbox/insi/calls``: every call with its raw request, kept in ``<state_dir>/insi/calls.jsonl``
  (appended, survives restarts; the last ``MAX_JOURNAL`` calls are kept).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from agent.api.spec import RouteTable, json_response
from agent.clock import Clock, SystemClock
from agent.errors import InvalidInput
from agent.logs import get_logger
from relais_sandbox import cnda
from relais_sandbox.host import FaultState, SandboxContext, fault_middleware
from relais_sandbox.identities import DEMO_CARD, TEST_IDENTITIES, TestIdentity, VirtualCard
from relais_sandbox.insi_checks import Refused, check
from relais_sandbox.insi_wire import (
    VITALE,
    BadRequest,
    Fault,
    Former,
    Found,
    SearchRequest,
    answer_xml,
    fault_xml,
    read_request,
    refusal,
    technical_error,
)

log = get_logger("sandbox.insi")
PATH = "/insi/ServiceIdentiteCertifiee"
MAX_JOURNAL = 1000
MAX_KEPT_REQUEST = 256 * 1024
ANSWERS = ("CR00", "CR01", "CR02", "siram_40", "siram_100", "xml")
AFTER = ("now", "first_call", "technical_error")
SOAP_TYPE = "application/soap+xml"


def found(person: TestIdentity) -> Found:
    return Found(person.ins, person.oid, person.birth_name, person.given_names, person.sex, person.birth_date,
                 person.birth_place, tuple(Former(f.value, f.oid, f.start or "", f.end or "") for f in person.history))


def match_traits(people: list[TestIdentity], request: SearchRequest) -> list[TestIdentity]:
    """INSi's comparison of strict traits as sent (upper case, exact); the birth place only when sent."""
    out = []
    for person in people:
        if not person.in_insi or (person.birth_name, person.sex, person.birth_date) != (
                request.birth_name, request.sex, request.birth_date):
            continue
        if request.given not in (person.given_names[0], " ".join(person.given_names)):
            continue
        if request.birth_place and request.birth_place != person.birth_place:
            continue
        out.append(person)
    return out


def match_vitale(cards: list[VirtualCard], request: SearchRequest) -> list[TestIdentity]:
    """The beneficiaries of the cards of this insured person (MatriculeOD) with this birth date and rank."""
    date = request.card_birth_date
    iso = f"{date[4:8]}-{date[2:4]}-{date[0:2]}" if len(date) == 8 else ""
    out: list[TestIdentity] = []
    for card in cards:
        for beneficiary in card.beneficiaries:
            person = beneficiary.person
            if (not person.in_insi or person in out or beneficiary.insured_nir[:13] != request.od_number[:13]
                    or person.birth_date != iso or str(beneficiary.birth_rank) != request.rank):
                continue
            if request.individual_number and request.individual_number != person.ins[:13]:
                continue
            if request.birth_name and request.birth_name not in (person.birth_name, person.used_name):
                continue
            out.append(person)
    return out


@dataclass
class Injection:
    answer: str
    after: str = "now"
    times: int = 1
    identity: str = ""
    xml: str = ""
    primed: bool = False  # the "first_call" / "technical_error" step happened


@dataclass
class InsiSimulator:
    name: str = "insi"
    faults: FaultState = field(default_factory=FaultState)
    people: list[TestIdentity] = field(default_factory=lambda: list(TEST_IDENTITIES))
    cards: list[VirtualCard] = field(default_factory=lambda: [DEMO_CARD])
    calls: list[dict[str, Any]] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)
    reference_dir: Path | None = None
    injection: Injection | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)
    _state: Path | None = None
    _ca: x509.Certificate | None = None

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        self._state = ctx.state_dir / self.name
        self._state.mkdir(parents=True, exist_ok=True)
        self._load()
        reference = self.reference_dir or cnda.reference_dir()
        if reference is not None:
            loaded = cnda.load(reference)
            known = {p.ins for p in self.people}
            self.people += [p for p in loaded.people if p.ins not in known]
            self.cards += list(loaded.cards.values())
        self._ca = x509.load_pem_x509_certificate(ctx.pki.ca_path.read_bytes())
        server = ctx.pki.issue("insi-server", common_name="insi.sandbox.localhost", server=True)
        client = ctx.pki.issue("insi-client", common_name="Relais INSi client (sandbox)", client=True)
        urls = {}
        for channel, context in (("mtls", server.server_context(ctx.pki.ca_path)), ("cpx", server.server_context())):
            app = web.Application(middlewares=[fault_middleware(self.faults)], client_max_size=1 << 20)
            app.router.add_post(PATH, self._handler(channel))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, ctx.host, 0, ssl_context=context)
            await site.start()
            self._runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            urls[channel] = f"https://{ctx.host}:{port}{PATH}"
        return {"url": urls["mtls"], "cpx_url": urls["cpx"], "ca_file": str(ctx.pki.ca_path),
                "client_cert": str(client.cert_path), "client_key": str(client.key_path)}

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def card(self, key: str) -> VirtualCard | None:
        return next((c for c in self.cards if c.key == key), None)

    def control_routes(self, table: RouteTable) -> None:
        async def calls(request: web.Request) -> web.Response:
            return web.json_response({"items": list(self.calls)})

        async def inject(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            self.injection = self._injection(await read_json(request))
            return web.json_response({"injection": None if self.injection is None else vars(self.injection)})

        table.get("/_sandbox/insi/calls", calls, summary="Appels reçus par le simulateur INSi (requêtes brutes)",
                  tag="sandbox", responses={200: json_response("Journal des appels, requêtes SOAP comprises")})
        table.post("/_sandbox/insi/inject", inject, summary="Injecter une réponse INSi (comme l'injecteur du CNDA)",
                   tag="sandbox", request_schema={"type": "object", "properties": {
                       "answer": {"enum": [*ANSWERS, None]}, "after": {"enum": list(AFTER)},
                       "times": {"type": "integer", "minimum": 1, "maximum": 100},
                       "identity": {"type": "string"}, "xml": {"type": "string"}}},
                   responses={200: json_response("Injection en attente (null : aucune)")})

    def _injection(self, body: dict[str, Any]) -> Injection | None:
        answer = body.get("answer")
        if answer is None:
            return None
        if answer not in ANSWERS:
            raise InvalidInput.field("answer", f"Réponse inconnue ; valeurs possibles : {', '.join(ANSWERS)}.")
        after = body.get("after", "now")
        if after not in AFTER:
            raise InvalidInput.field("after", f"« after » vaut {', '.join(AFTER)}.")
        times = body.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 100:
            raise InvalidInput.field("times", "« times » est un entier de 1 à 100.")
        identity = str(body.get("identity") or "")
        if answer == "CR00" and not any(p.key == identity for p in self.people):
            raise InvalidInput.field("identity", "CR00 : « identity » est la clé d'une personne du simulateur.")
        xml = body.get("xml") or ""
        if answer == "xml" and (not isinstance(xml, str) or not xml.strip()):
            raise InvalidInput.field("xml", "« xml » est le corps de réponse SOAP à renvoyer.")
        return Injection(answer, after, times, identity, str(xml))

    def _handler(self, channel: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            return await self.handle(request, channel)

        return handle

    async def handle(self, request: web.Request, channel: str) -> web.Response:
        data = await request.read()
        entry: dict[str, Any] = {"received_at": self.clock.now().isoformat(timespec="seconds"), "channel": channel,
                                 "request": data[:MAX_KEPT_REQUEST].decode("utf-8", "replace"), "injected": False}
        try:
            parsed = read_request(data)
            entry.update(action=parsed.action, message_id=parsed.message_id, emitter=parsed.emitter)
            assert self._ca is not None
            check(parsed, channel=channel, ca=self._ca, now=self.clock.now(), cards={c.serial: c for c in self.cards})
        except BadRequest as exc:
            return self._send_fault(entry, refusal("sandbox_request", f"Requête INSi invalide : {exc}"))
        except Refused as refused:
            return self._send_fault(entry, refused.fault)
        injected = self._injected(parsed)
        if isinstance(injected, Fault):
            return self._send_fault(entry, injected)
        if isinstance(injected, bytes):
            entry.update(code="injected", injected=True)
            self._journal(entry)
            return web.Response(body=injected, content_type=SOAP_TYPE, charset="utf-8")
        matches = (match_vitale(self.cards, parsed) if parsed.action == VITALE
                   else match_traits(self.people, parsed))
        if injected is not None:
            matches, entry["injected"] = injected, True
        code = "00" if len(matches) == 1 else "01" if not matches else "02"
        entry.update(code=code, ins=matches[0].ins if code == "00" else None)
        self._journal(entry)
        body = answer_xml(code, found(matches[0]) if code == "00" else None)
        return web.Response(body=body, content_type=SOAP_TYPE, charset="utf-8")

    def _injected(self, parsed: SearchRequest) -> Fault | bytes | list[TestIdentity] | None:
        """What an injection makes of this call: a fault, a raw body, forced matches, or None (answer normally)."""
        pending = self.injection
        if pending is None:
            return None
        if pending.after != "now" and not pending.primed:
            pending.primed = True
            return technical_error(parsed.action == VITALE) if pending.after == "technical_error" else None
        pending.times -= 1
        if pending.times <= 0:
            self.injection = None
        if pending.answer == "siram_40":
            return technical_error(parsed.action == VITALE)
        if pending.answer == "siram_100":
            return Fault(False, "siram_100", "L'accès par ce progiciel au service n'est pas autorisé. Contactez "
                         "l'éditeur du progiciel ou votre responsable informatique.", "desir_550",
                         "Numéro d'autorisation du logiciel inconnu.")
        if pending.answer == "xml":
            return pending.xml.encode("utf-8")
        if pending.answer == "CR00":
            return [p for p in self.people if p.key == pending.identity][:1]
        return [] if pending.answer == "CR01" else self.people[:2]

    def _send_fault(self, entry: dict[str, Any], fault: Fault) -> web.Response:
        entry.update(code="fault", fault=fault.subcode, detail_code=fault.detail_code)
        self._journal(entry)
        return web.Response(status=fault.http_status, body=fault_xml(fault), content_type=SOAP_TYPE, charset="utf-8")

    def _journal(self, entry: dict[str, Any]) -> None:
        self.calls.append(entry)
        del self.calls[:-MAX_JOURNAL]
        assert self._state is not None
        with open(self._state / "calls.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    def _load(self) -> None:
        assert self._state is not None
        path = self._state / "calls.jsonl"
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines()[-MAX_JOURNAL:]
        try:
            self.calls = [json.loads(line) for line in lines if line.strip()]
        except ValueError:
            log.warning("journal INSi du bac à sable illisible : repart à vide")
            self.calls = []
        path.write_text("".join(json.dumps(c) + "\n" for c in self.calls), encoding="utf-8")

