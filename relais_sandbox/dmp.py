"""The DMP simulator: XDS.b over SOAP 1.2 + MTOM, mutual TLS, VIHF and IHE DSG checked, state across restarts.

Endpoints (loopback, TLS with a server certificate of the sandbox CA, client certificate required):
``/repository`` (ITI-41, ITI-43), ``/registry`` (ITI-18, ITI-57), ``/patients`` (TD0.2, TD0.3 in HL7v3). Every XDS
request is validated against the XDS.b schemas when the reference kit is found (``RELAIS_REFERENCE`` or
``../shared/reference``; the kit has no HL7v3 schemas). Demo patients start with a few ANS example documents
re-identified to them; the CNDA test patients come from the test book (``dmp_patients``).
Control routes: ``/_sandbox/dmp/submissions``, ``/_sandbox/dmp/documents?ins=``, ``/_sandbox/dmp/calls`` (every
request, in order), ``POST /_sandbox/dmp/authorizations`` (a professional's authorisation, as Web-PS sets it).

Pro Santé Connect mode (agent/dmp/psc.py says what is assumed, none of it public): ``POST /token`` exchanges a
PSC access token (RFC 8693) for a DMP token bound to the TLS client certificate of the exchange (RFC 8705
``cnf.x5t#S256``); a SOAP call carrying it (``Authorization: Bearer``) is accepted only from that same
certificate, with a VIHF in the PSC mode naming the same professional, while the PSC session is active at the
simulated PSC. Tokens of another provider, another certificate or another professional are refused.
``GET /_sandbox/dmp/psc-calls`` lists the calls made in this mode.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from lxml import etree

from agent.api.spec import RouteTable, json_response
from agent.dmp import soap
from agent.dmp.ebrim import cx
from agent.dmp.models import STATUS_NAMES, SubmissionRequest
from agent.dmp.psc import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, PscDmpSettings
from agent.dmp.submission import SubmissionDefaults, build_submission
from agent.dmp.vihf import SAML
from agent.errors import InvalidInput, RelaisError
from agent.logs import get_logger
from agent.psc.jose import SigningKey, TokenInvalid, verify
from agent.reference import find_reference
from agent.softkey import SoftwareSigner
from agent.xml.safe import parse
from relais_sandbox.dmp_patients import DmpPatients
from relais_sandbox.dmp_registry import Registry
from relais_sandbox.dmp_service import Caller, DmpService
from relais_sandbox.host import FaultMode, FaultState, SandboxContext, fault_middleware
from relais_sandbox.psc import PscSimulator

log = get_logger("sandbox.dmp")
MAX_REQUEST = 64 * 1024 * 1024
DEMO_AUTHOR_ID = "801234567897"  # Dr MULLER, author of the ANS example documents
SEED_DOCUMENTS = ("VAC-NOTE_2023.01.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml", "IPS-FR_2024.01.xml")
SEED_PATIENTS = ("pat-trois", "orsoni", "lefevre")
HL7 = "urn:hl7-org:v3"
AUTHORIZATION_STATES = frozenset({"VALIDE", "EXPIREE", "INTERDITE", "NON_EXISTE"})
DMP_TOKEN_TTL = 300
# The PSC mode as this simulator plays it: the agent's defaults (none is public: agent/dmp/psc.py).
PSC_VIHF_MODE = PscDmpSettings("").vihf_mode
PSC_AUTHN_CONTEXT = PscDmpSettings("").authn_context


PARAMETER_KEYS = {"majority_age": "age-majorite", "minors_management": "fonctions-gestion-mineurs",
                  "allow_masked_and_invisible": "cumul-invisible_patient-masque_ps", "production": "production"}
DEFAULT_PARAMETERS = {"age-majorite": "18", "fonctions-gestion-mineurs": "true",
                      "cumul-invisible_patient-masque_ps": "false", "production": "false"}


class DmpSimulator:
    name = "dmp"

    def __init__(self, reference_dir: Path | None = None, *, seed: bool = True,
                 psc: PscSimulator | None = None) -> None:
        self.faults = FaultState()
        self.reference_dir = reference_dir if reference_dir is not None else find_reference(marker="ihe")
        self.seed = seed
        self.registry: Registry | None = None
        self.service: DmpService | None = None
        self._runner: web.AppRunner | None = None
        self._files_runner: web.AppRunner | None = None
        self.psc = psc  # the simulated PSC whose tokens the PSC mode accepts
        self.token_key = SigningKey.generate() if psc is not None else None
        self.token_issuer = ""
        self.psc_calls: list[dict[str, str]] = []
        # The DMP's parameters file (EX_GEN-1540) as this simulator serves it: the test book's names, in an XML shape
        # of its own (the real file's structure is not public; agent/dmp/params.py reads several).
        self.parameters: dict[str, str] = dict(DEFAULT_PARAMETERS)
        self.parameter_downloads = 0

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        state = ctx.state_dir / self.name
        state.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(state / "dmp.sqlite")
        ca = x509.load_pem_x509_certificate(ctx.pki.ca_path.read_bytes())
        schema = None
        if self.reference_dir is not None:
            from agent.dmp.schemas import xds_schema

            schema = xds_schema(self.reference_dir)
        else:
            log.warning("kit de référence introuvable : le simulateur DMP ne valide pas les schémas XDS.b")
        from relais_sandbox.identities import PAT_TROIS_JULES

        # A newborn not yet known to INSi has no DMP either: TD0.2 answers "no DMP", ITI-41 an unknown patient.
        self.service = DmpService(self.registry, [ca], schema,
                                  without_dmp={cx(PAT_TROIS_JULES.ins, PAT_TROIS_JULES.oid)},
                                  patients=DmpPatients.from_reference(self.reference_dir))
        server = ctx.pki.issue("dmp-server", common_name="dmp.sandbox.localhost", server=True)
        client = ctx.pki.issue("dmp-client", common_name="Relais DMP client (sandbox)", client=True)
        structure = ctx.pki.issue("dmp-structure", common_name="Cabinet du Dr DEMO (cachet, sandbox)", client=True)
        author = ctx.pki.issue("dmp-demo-author", common_name="Dr DEMO (signature, sandbox)")
        if self.seed and self.reference_dir is not None and not self.registry.all():
            seeder = ctx.pki.issue("dmp-seed-author", common_name="Dr MULLER (signature, sandbox)")
            await asyncio.to_thread(self._seed, SoftwareSigner.from_files(seeder.cert_path, seeder.key_path))
        app = web.Application(middlewares=[fault_middleware(self.faults)], client_max_size=MAX_REQUEST)
        app.router.add_post("/repository", self.handle)
        app.router.add_post("/registry", self.handle)
        app.router.add_post("/patients", self.handle)
        app.router.add_post("/token", self.token)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, ctx.host, 0, ssl_context=server.server_context(ctx.pki.ca_path))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.token_issuer = f"https://{ctx.host}:{port}"
        # The parameters file lives on another web server than the web services (www.dmp.fr in production): its own
        # site, outside the web services' fault modes and request count.
        files = web.Application()
        files.router.add_get("/parametres", self.parameters_redirect)
        files.router.add_get("/documents/param-lps", self.parameters_file)
        self._files_runner = web.AppRunner(files, access_log=None, handle_signals=False)
        await self._files_runner.setup()
        files_site = web.TCPSite(self._files_runner, ctx.host, 0, ssl_context=server.server_context())  # public
        await files_site.start()
        files_port = files_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return {"url": f"https://{ctx.host}:{port}", "ca_file": str(ctx.pki.ca_path),
                "psc_token_url": f"https://{ctx.host}:{port}/token" if self.psc is not None else "",
                "params_url": f"https://{ctx.host}:{files_port}/parametres",
                "client_cert": str(client.cert_path), "client_key": str(client.key_path),
                "structure_cert": str(structure.cert_path), "structure_key": str(structure.key_path),
                "signer_cert": str(author.cert_path), "signer_key": str(author.key_path)}

    async def stop(self) -> None:
        if self._files_runner is not None:
            await self._files_runner.cleanup()
            self._files_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.registry is not None:
            self.registry.close()
            self.registry = None

    # --- protocol endpoints ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        assert self.service is not None
        raw = await request.read()
        try:
            message = soap.read_mtom(raw, request.headers.get("Content-Type", ""), max_bytes=MAX_REQUEST)
            env = parse(message.root, what="requête SOAP", max_bytes=MAX_REQUEST)
            action = (env.findtext(f"{{{soap.SOAP12}}}Header/{{{soap.WSA}}}Action") or "").strip()
            refused = self._check_psc_mode(request, env, action)
            if refused:
                return _fault(True, refused)
            refusal = (self.faults.refusal_transaction, self.faults.refusal_code, self.faults.refusal_text) \
                if self.faults.mode is FaultMode.REFUSE else None
            answer = await asyncio.to_thread(self.service.handle, action, env, message.attachments, raw,
                                             request.headers.get("Content-Type", ""), refusal)
        except RelaisError as exc:
            return _fault(True, exc.message)
        except ValueError as exc:
            return _fault(True, f"Requête invalide : {exc}")
        relates = ""
        xml = etree.tostring(soap.response_envelope(answer.action, answer.body, relates), xml_declaration=True,
                             encoding="UTF-8")
        if answer.attachments or answer.action == soap.ACTIONS_RESPONSE[soap.ACTION_ITI43]:
            body, ctype = soap.write_mtom(soap.MtomMessage(xml, answer.attachments), answer.action)
            return web.Response(body=body, headers={"Content-Type": ctype})
        return web.Response(body=xml, headers={"Content-Type": f"{soap.SOAP_CT}; charset=UTF-8"})

    # --- the parameters file --------------------------------------------------------------------------------

    async def parameters_redirect(self, request: web.Request) -> web.Response:
        """The configured URL answers a redirect, as the real one may (EX_GEN-1540: follow HTTPS 3xx)."""
        raise web.HTTPFound("/documents/param-lps")

    async def parameters_file(self, request: web.Request) -> web.Response:
        self.parameter_downloads += 1
        root = etree.Element("parametres-lps")
        for name, value in self.parameters.items():
            etree.SubElement(root, "parametre", nom=name, valeur=value)
        return web.Response(body=etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                            content_type="application/xml")

    # --- Pro Santé Connect mode --------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """RFC 8693 exchange of a PSC access token for a DMP token bound to the caller's TLS certificate."""
        form = await request.post()
        if self.psc is None or self.token_key is None:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self.psc.active_grant(str(form.get("subject_token", "")))
        thumbprint = _peer_thumbprint(request)
        if grant is None or not thumbprint:
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "jeton Pro Santé Connect inconnu, expiré ou révoqué"},
                                     status=400)
        now = int(time.time())
        token = self.token_key.sign({"iss": self.token_issuer, "sub": grant.user.national_id, "aud": "dmp",
                                     "iat": now, "exp": now + DMP_TOKEN_TTL, "psc_sid": grant.sid,
                                     "cnf": {"x5t#S256": thumbprint}})
        return web.json_response({"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE,
                                  "token_type": "Bearer", "expires_in": DMP_TOKEN_TTL},
                                 headers={"Cache-Control": "no-store"})

    def _check_psc_mode(self, request: web.Request, env: etree._Element, action: str) -> str:
        """Why a call in the PSC mode is refused ("" when it is not in that mode, or is accepted)."""
        assert self.service is not None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        assertions = env.findall(f"{{{soap.SOAP12}}}Header/{{{soap.WSSE}}}Security/{{{SAML}}}Assertion")
        context = assertions[0].findtext(f".//{{{SAML}}}AuthnContextClassRef") if len(assertions) == 1 else ""
        psc_vihf = (context or "").strip() == PSC_AUTHN_CONTEXT
        if not token and not psc_vihf:
            return ""
        if self.psc is None or self.token_key is None:
            return "Mode Pro Santé Connect non pris en charge par ce DMP."
        if scheme.lower() != "bearer" or not token:
            return "Mode Pro Santé Connect : jeton d'accès DMP absent."
        try:
            claims = verify(token, self.token_key.jwks(), now=dt.datetime.now(dt.UTC), issuer=self.token_issuer,
                            audience="dmp")
        except TokenInvalid:
            return "Jeton d'accès DMP invalide ou expiré."
        cnf = claims.get("cnf")
        if not isinstance(cnf, dict) or cnf.get("x5t#S256") != _peer_thumbprint(request):
            return "Jeton d'accès DMP lié à un autre certificat TLS."
        grant = self.psc.grants.get(str(claims.get("psc_sid", "")))
        if grant is None or grant.revoked:
            return "Session Pro Santé Connect révoquée."
        caller = self.service.verify_vihf(env)
        if caller.national_id != claims.get("sub"):
            return "Le VIHF nomme un autre professionnel que le jeton Pro Santé Connect."
        if not psc_vihf or caller.attributes.get("Authentification_Mode", [""])[0] != PSC_VIHF_MODE:
            return "VIHF : mode d'authentification Pro Santé Connect attendu."
        self.psc_calls.append({"action": action, "professional": caller.national_id})
        return ""

    # --- control routes --------------------------------------------------------------------------------

    def control_routes(self, table: RouteTable) -> None:
        async def submissions(request: web.Request) -> web.Response:
            assert self.registry is not None
            return web.json_response({"items": self.registry.submissions(soap=request.query.get("soap") != "0")})

        async def documents(request: web.Request) -> web.Response:
            assert self.registry is not None
            ins = request.query.get("ins", "")
            items = []
            for stored in self.registry.all():
                if ins and not stored.patient_id.startswith(f"{ins}^"):
                    continue
                entry = stored.entry
                items.append({**entry.as_dict(), "patient_id": stored.patient_id, "lid": stored.lid,
                              "version": stored.version, "status": STATUS_NAMES.get(stored.status, stored.status),
                              "author_id": stored.author_id})
            return web.json_response({"items": items})

        async def calls(request: web.Request) -> web.Response:
            assert self.service is not None
            return web.json_response({"items": list(self.service.calls)})

        async def authorizations(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            assert self.service is not None
            body = await read_json(request)
            ins, professional = str(body.get("ins", "")), str(body.get("professional", ""))
            state = str(body.get("authorization", ""))
            if not (len(ins) == 15 and ins.isdigit()):
                raise InvalidInput.field("ins", "INS attendu (15 chiffres).")
            if not professional.isdigit():
                raise InvalidInput.field("professional", "Identifiant national (RPPS) attendu.")
            if state not in AUTHORIZATION_STATES:
                raise InvalidInput.field("authorization", "VALIDE, EXPIREE, INTERDITE ou NON_EXISTE attendu.")
            treating = bool(body.get("treating_physician", False))
            self.service.patients.set_authorization(ins, professional, state, treating)
            return web.json_response({"ins": ins, "professional": professional, "authorization": state,
                                      "treating_physician": treating})

        async def get_parameters(request: web.Request) -> web.Response:
            return web.json_response({"parameters": self.parameters, "downloads": self.parameter_downloads})

        async def set_parameters(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            for key, name in PARAMETER_KEYS.items():
                if key in body:
                    value = body[key]
                    self.parameters[name] = str(value).lower() if isinstance(value, bool) else str(value)
            return await get_parameters(request)

        async def psc_calls(request: web.Request) -> web.Response:
            return web.json_response({"items": list(self.psc_calls)})

        table.get("/_sandbox/dmp/parameters", get_parameters, tag="sandbox",
                  summary="Le fichier des paramètres que sert le DMP simulé, et combien de fois il a été lu",
                  responses={200: json_response("Paramètres servis")})
        table.post("/_sandbox/dmp/parameters", set_parameters, tag="sandbox",
                   summary="Changer les paramètres du DMP simulé (âge de la majorité, gestion des mineurs, cumul "
                           "des masquages, production)",
                   request_schema={"type": "object", "properties": {
                       "majority_age": {"type": "integer"}, "minors_management": {"type": "boolean"},
                       "allow_masked_and_invisible": {"type": "boolean"}, "production": {"type": "boolean"}}},
                   responses={200: json_response("Paramètres servis")})
        table.get("/_sandbox/dmp/psc-calls", psc_calls, tag="sandbox",
                  summary="Appels reçus par le DMP simulé en mode Pro Santé Connect (action, professionnel)",
                  responses={200: json_response("Appels en mode PSC")})
        table.get("/_sandbox/dmp/calls", calls, summary="Requêtes reçues par le simulateur DMP, dans l'ordre",
                  tag="sandbox", responses={200: json_response(
                      "transaction, action SOAP, interaction HL7v3 ou requête stockée, professionnel, requête brute")})
        table.post("/_sandbox/dmp/authorizations", authorizations, tag="sandbox",
                   summary="Fixer l'autorisation d'un professionnel sur un DMP (comme le CNDA par Web-PS)",
                   request_schema={"type": "object", "required": ["ins", "professional", "authorization"],
                                   "properties": {"ins": {"type": "string"}, "professional": {"type": "string"},
                                                  "authorization": {"type": "string",
                                                                    "enum": sorted(AUTHORIZATION_STATES)},
                                                  "treating_physician": {"type": "boolean"}}},
                   responses={200: json_response("Autorisation enregistrée")})
        table.get("/_sandbox/dmp/submissions", submissions, summary="Lots reçus par le simulateur DMP (ITI-41)",
                  tag="sandbox", parameters=({"name": "soap", "in": "query", "schema": {"enum": ["0", "1"]},
                                              "description": "0 : sans les requêtes brutes (soap_base64)"},),
                  responses={200: json_response("Lots de soumission reçus")})
        table.get("/_sandbox/dmp/documents", documents, summary="Documents du DMP simulé, avec statut et visibilité",
                  tag="sandbox", parameters=({"name": "ins", "in": "query", "schema": {"type": "string"}},),
                  responses={200: json_response("Documents du DMP simulé")})

    # --- demo content ----------------------------------------------------------------------------------

    def _seed(self, signer: SoftwareSigner) -> None:
        from relais_sandbox.identities import identity

        assert self.service is not None and self.reference_dir is not None
        examples = self.reference_dir / "ci-sis" / "ExemplesCDA"
        defaults = SubmissionDefaults(source_id="1.2.250.1.213.1.1.9.2")
        for p_index, key in enumerate(SEED_PATIENTS):
            person = identity(key)
            for d_index, name in enumerate(SEED_DOCUMENTS):
                path = examples / name
                if not path.exists():
                    continue
                cda, uid = reidentify(path.read_bytes(), person.ins, person.oid, person.birth_name,
                                      person.first_given_name, person.sex, person.birth_date,
                                      f"1.2.250.1.213.1.1.9.3.{p_index + 1}.{d_index + 1}")
                req = SubmissionRequest(cda=cda, submission_set_unique_id=f"1.2.250.1.213.1.1.9.4.{p_index + 1}."
                                        f"{d_index + 1}", document_unique_id=uid, ins=person.ins, ins_oid=person.oid)
                built = build_submission(req, signer, defaults, dt.datetime.now(dt.UTC), lambda: str(uuid.uuid4()))
                caller = Caller(DEMO_AUTHOR_ID, cx(person.ins, person.oid), {})
                self.service.provide_and_register(built.body, built.attachments, caller, b"")
        log.info("DMP simulé : documents de démonstration déposés")


def reidentify(cda: bytes, ins: str, oid: str, family: str, given: str, sex: str, birth_date: str,
               new_id: str) -> tuple[bytes, str]:
    """An ANS example document given to a demo patient: new document id, INS and traits (nothing else)."""
    root = parse(cda, what="exemple CDA")
    ns = {"h": HL7}
    doc_id = root.find("h:id", ns)
    if doc_id is not None:
        doc_id.attrib.pop("extension", None)
        doc_id.set("root", new_id)
    pr = root.find("h:recordTarget/h:patientRole", ns)
    if pr is not None:
        ids = pr.findall("h:id", ns)
        if ids:
            ids[0].set("root", oid)
            ids[0].set("extension", ins)
        patient = pr.find("h:patient", ns)
        if patient is not None:
            for fam in patient.iterfind("h:name/h:family", ns):
                fam.text = family
            for giv in patient.iterfind("h:name/h:given", ns):
                giv.text = given
            gender = patient.find("h:administrativeGenderCode", ns)
            if gender is not None:
                gender.set("code", sex)
            birth = patient.find("h:birthTime", ns)
            if birth is not None:
                birth.set("value", birth_date.replace("-", ""))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), new_id


def _peer_thumbprint(request: web.Request) -> str:
    """RFC 8705 §3.1: base64url SHA-256 of the TLS client certificate (DER) of this connection."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return ""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _fault(sender: bool, reason: str) -> web.Response:
    xml = etree.tostring(soap.fault_envelope(sender, reason), xml_declaration=True, encoding="UTF-8")
    return web.Response(status=400 if sender else 500, body=xml,
                        headers={"Content-Type": f"{soap.SOAP_CT}; charset=UTF-8"})


__all__ = ["DmpSimulator", "json", "reidentify"]
