"""The INSi simulator: the téléservice's SOAP 1.2 over TLS with client authentication, on a loopback port.

It knows the people of ``relais_sandbox.identities`` (the demo carte Vitale's beneficiaries among them) and
answers as INSi does: CR 00 with the active INS, its history and the reference traits; 01 when nobody matches;
02 when several people match (homonyms told apart only by the birth place). It refuses a request without the
ContexteBAM/ContexteLPS headers or without a signed assertion (SOAP fault), checking that the signature is intact
(the real service also checks the signer's chain of trust; the sandbox accepts any signer, as test cards vary).

State (the journal of calls, without traits) lives in ``<state_dir>/insi/calls.json`` and survives restarts.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from agent.api.spec import RouteTable, json_response
from agent.domain.ins import Ins
from agent.domain.traits import IdentityTraits
from agent.errors import RelaisError
from agent.ins import soap
from agent.ins.soap import CR_FOUND, CR_NOT_FOUND, CR_SEVERAL, HistoricIns, InsiAnswer, InsiRequest, VitaleQuery
from agent.logs import get_logger
from agent.xml.signing import verify_enveloped
from relais_sandbox.host import FaultState, SandboxContext, fault_middleware
from relais_sandbox.identities import DEMO_VITALE, TEST_IDENTITIES, TestIdentity

log = get_logger("sandbox.insi")
PATH = "/insi/ServiceIdentiteCertifiee"
MAX_JOURNAL = 1000


def _traits(person: TestIdentity) -> IdentityTraits:
    return IdentityTraits(person.birth_name, person.given_names, person.sex, person.birth_date, person.birth_place)


def _answer(matches: list[TestIdentity]) -> InsiAnswer:
    if not matches:
        return InsiAnswer(CR_NOT_FOUND)
    if len(matches) > 1:
        return InsiAnswer(CR_SEVERAL)
    person = matches[0]
    history = tuple(HistoricIns(Ins(f.value, f.oid), f.start, f.end) for f in person.history)
    return InsiAnswer(CR_FOUND, ins=Ins(person.ins, person.oid), traits=_traits(person), history=history)


def match_traits(people: list[TestIdentity], query: IdentityTraits) -> list[TestIdentity]:
    """INSi's comparison: exact strict traits; ``Prenom`` is the first birth given name or the whole list."""
    sent = " ".join(query.given_names)
    found = []
    for person in people:
        if not person.in_insi:
            continue
        if (person.birth_name, person.sex, person.birth_date) != (query.birth_name, query.sex, query.birth_date):
            continue
        if sent not in (person.first_given_name, " ".join(person.given_names)):
            continue
        if query.birth_place and query.birth_place != person.birth_place:
            continue
        found.append(person)
    return found


def match_vitale(query: VitaleQuery) -> list[TestIdentity]:
    """The beneficiaries of the card whose insured NIR is given, narrowed by birth date, rank and name."""
    found = []
    for beneficiary in DEMO_VITALE:
        person = beneficiary.person
        if not person.in_insi or beneficiary.insured_nir[:13] != query.insured_nir[:13]:
            continue
        if query.individual_nir and query.individual_nir[:13] != person.ins[:13]:
            continue
        if query.birth_date != person.birth_date or query.birth_rank != beneficiary.birth_rank:
            continue
        if query.birth_name and query.birth_name.upper() not in (person.birth_name, person.used_name):
            continue
        found.append(person)
    return found


@dataclass
class InsiSimulator:
    name: str = "insi"
    faults: FaultState = field(default_factory=FaultState)
    people: list[TestIdentity] = field(default_factory=lambda: list(TEST_IDENTITIES))
    calls: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _state: Path | None = None
    _ca: x509.Certificate | None = None

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        self._state = ctx.state_dir / self.name
        self._state.mkdir(parents=True, exist_ok=True)
        self._load()
        self._ca = x509.load_pem_x509_certificate(ctx.pki.ca_path.read_bytes())
        server = ctx.pki.issue("insi-server", common_name="insi.sandbox.localhost", server=True)
        client = ctx.pki.issue("insi-client", common_name="Relais INSi client (sandbox)", client=True)
        app = web.Application(middlewares=[fault_middleware(self.faults)], client_max_size=1 << 20)
        app.router.add_post(PATH, self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, ctx.host, 0, ssl_context=server.server_context(ctx.pki.ca_path))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return {"url": f"https://{ctx.host}:{port}{PATH}", "ca_file": str(ctx.pki.ca_path),
                "client_cert": str(client.cert_path), "client_key": str(client.key_path)}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def control_routes(self, table: RouteTable) -> None:
        async def calls(request: web.Request) -> web.Response:
            return web.json_response({"items": list(self.calls)})

        table.get("/_sandbox/insi/calls", calls, summary="Appels reçus par le simulateur INSi", tag="sandbox",
                  responses={200: json_response("Journal des appels (sans traits d'identité)")})

    async def handle(self, request: web.Request) -> web.Response:
        data = await request.read()
        try:
            parsed = soap.parse_request(data)
        except (ValueError, RelaisError) as exc:
            return self._fault("SOAP_INVALIDE", f"Requête INSi invalide : {exc}")
        problem = self._check_assertion(parsed)
        if problem:
            self._journal(parsed, "fault")
            return self._fault("AUTHENTIFICATION", problem)
        if parsed.traits is not None:
            answer = _answer(match_traits(self.people, parsed.traits))
        else:
            assert parsed.vitale is not None
            answer = _answer(match_vitale(parsed.vitale))
        self._journal(parsed, answer.code, answer.ins.value if answer.ins else None)
        return web.Response(body=soap.build_answer(answer), content_type="application/soap+xml", charset="utf-8")

    def _check_assertion(self, parsed: InsiRequest) -> str:
        assertion = parsed.assertion
        if assertion is None:
            return "Jeton d'authentification (assertion SAML signée) absent."
        node = assertion.find(f"{{{soap.DS}}}Signature/{{{soap.DS}}}KeyInfo/{{{soap.DS}}}X509Data/"
                              f"{{{soap.DS}}}X509Certificate")
        if node is None or not (node.text or "").strip():
            return "Assertion non signée."
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split())))
            trusted = [cert] + ([self._ca] if self._ca else [])
            verify_enveloped(assertion, trusted, dt.datetime.now(dt.UTC), id_attribute="ID")
        except (ValueError, RelaisError) as exc:
            return f"Signature de l'assertion invalide : {exc}"
        return ""

    def _fault(self, code: str, reason: str) -> web.Response:
        return web.Response(status=400, body=soap.build_fault(code, reason), content_type="application/soap+xml",
                            charset="utf-8")

    def _journal(self, parsed: InsiRequest, outcome: str, ins: str | None = None) -> None:
        self.calls.append({"received_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "action": parsed.action, "message_id": parsed.message_id, "emitter": parsed.emitter,
                           "code": outcome, "ins": ins})
        del self.calls[:-MAX_JOURNAL]
        self._save()

    def _load(self) -> None:
        assert self._state is not None
        path = self._state / "calls.json"
        if path.exists():
            try:
                self.calls = list(json.loads(path.read_text()))
            except ValueError:
                log.warning("journal INSi du bac à sable illisible : repart à vide")

    def _save(self) -> None:
        assert self._state is not None
        path = self._state / "calls.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.calls))
        os.replace(tmp, path)
