"""The Pro Santé Connect simulator: an OpenID Connect provider that plays PSC for the demo and the tests.

What it plays, from PSC's public documentation and public integrations (industriels.esante.gouv.fr "Pro Santé
Connect", its userinfo page, the BAS realm ``/auth/realms/esante-wallet``):
- discovery at ``<issuer>/.well-known/openid-configuration``, keys at ``.../protocol/openid-connect/certs``;
- the authorization endpoint (on the real PSC, the "wallet" page where the professional chooses the CPS card or
  the e-CPS app, push or QR code): here a test e-CPS user is approved at once (``POST /_sandbox/psc/user`` picks
  which one, or refuses), answering ``302`` to the loopback ``redirect_uri`` with ``code``, ``state`` and ``iss``;
- the token endpoint: authorization code with PKCE (S256 only, the verifier checked), refresh token (rotated);
- userinfo with PSC's claims: ``SubjectNameID`` (the national id, ``8`` + RPPS), ``preferred_username``,
  ``SubjectRefPro.exercices[]`` (``codeProfession``, ``codeTypeSavoirFaire``/``codeSavoirFaire``,
  ``activities[]``), ``SubjectRole``, ``Secteur_Activite``, ``Palier_Authentification``;
- the e-CPS push without a browser: OpenID CIBA in poll mode (``backchannel_authentication_endpoint``, grant
  ``urn:openid:params:grant-type:ciba``); ANS documents a CIBA page for PSC, whose parameters were not read: the
  standard's are played (``login_hint`` = the national id, ``binding_message``), approved at the second poll;
- revocation (RFC 7009), end-session (logout), and introspection (RFC 7662) for the simulated DMP, which accepts
  PSC-mode calls only with a token this provider issued and still holds active.

Differences with the real PSC, on purpose: plain HTTP on loopback (a browser opens the authorization page
without trusting the sandbox CA; the agent accepts ``http`` only for a loopback issuer); state in memory (a
restart ends every session, as a PSC logout would). Tokens are RS256 JWTs signed by a key made at start.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.api.spec import RouteTable, json_response
from agent.errors import InvalidInput
from agent.logs import get_logger
from agent.psc.jose import SigningKey, TokenInvalid, verify
from relais_sandbox.host import FaultState, SandboxContext, fault_middleware

log = get_logger("sandbox.psc")
REALM = "/auth/realms/esante-wallet"
OIDC = f"{REALM}/protocol/openid-connect"
CLIENT_ID = "relais-sandbox"  # the demo agent's client (public client: PKCE, no secret)
ACCESS_TTL = 300  # seconds; PSC's access tokens are short-lived and refreshed
REFRESH_TTL = 1800
CODE_TTL = 60
CIBA_GRANT = "urn:openid:params:grant-type:ciba"


@dataclass(frozen=True, slots=True)
class TestProfessional:
    rpps: str
    family_name: str
    given_name: str
    profession: str = "10"  # TRE_G15: médecin
    specialty: str = "SM54"  # TRE_R38 savoir-faire: médecine générale
    civility: str = "DR"

    @property
    def national_id(self) -> str:
        return f"8{self.rpps}"


# Fictitious test professionals; the first is the demo doctor of relais_sandbox/demo.py.
TEST_USERS = (
    TestProfessional("10001234567", "DEMO", "Alice"),
    TestProfessional("10009876543", "ESSAI", "Bruno", specialty="SM26"),
)


@dataclass
class Grant:
    """One login: the professional, the client, and the tokens issued for it (revoked together)."""

    sid: str
    user: TestProfessional
    client_id: str
    scope: str
    nonce: str
    refresh_token: str
    refresh_expires: float
    access_ids: set[str] = field(default_factory=set)
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class PendingCode:
    grant_sid: str
    client_id: str
    redirect_uri: str
    challenge: str
    expires: float


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def userinfo_claims(user: TestProfessional) -> dict[str, Any]:
    """PSC's userinfo for a test professional (the field names of PSC's userinfo documentation)."""
    return {
        "sub": f"f:sandbox:{user.national_id}",
        "SubjectNameID": user.national_id,
        "preferred_username": user.national_id,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "codeCivilite": user.civility,
        "SubjectRole": [f"{user.profession}^1.2.250.1.213.1.1.5.5"],
        "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
        "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
        "SubjectOrganization": "Cabinet médical (bac à sable)",
        "SubjectOrganizationID": "1750803447",
        "UITVersion": "1.0",
        "otherIds": [{"identifiant": user.national_id, "origine": "RPPS", "qualite": 1}],
        "SubjectRefPro": {"codeCivilite": user.civility, "exercices": [{
            "codeProfession": user.profession, "codeCategorieProfessionnelle": "C",
            "nomDexercice": user.family_name, "prenomDexercice": user.given_name,
            "codeTypeSavoirFaire": "S" if user.specialty else "", "codeSavoirFaire": user.specialty,
            "activities": [{"codeModeExercice": "L", "codeSecteurDactivite": "SA07",
                            "codeGenreActivite": "GENR01", "identifiantTechniqueDeLaStructure": "R10000001",
                            "raisonSocialeSite": "Cabinet médical (bac à sable)", "codePostal": "75008"}]}]},
    }


class PscSimulator:
    name = "psc"

    def __init__(self) -> None:
        self.faults = FaultState()
        self.key = SigningKey.generate()
        self.issuer = ""
        self.skew = 0.0  # seconds added to the simulator's clock (POST /_sandbox/psc/clock)
        self.user: TestProfessional | None = TEST_USERS[0]  # None: the professional refuses
        self.grants: dict[str, Grant] = {}
        self._codes: dict[str, PendingCode] = {}
        self._pushes: dict[str, list[Any]] = {}  # auth_req_id -> [grant sid, polls so far, expiry]
        self.pushes: list[dict[str, str]] = []  # what the e-CPS app was asked (national id, binding message)
        self._runner: web.AppRunner | None = None
        self.logins = 0

    def now(self) -> float:
        return time.time() + self.skew

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        app = web.Application(middlewares=[fault_middleware(self.faults)], client_max_size=64 * 1024)
        app.router.add_get(f"{REALM}/.well-known/openid-configuration", self.discovery)
        app.router.add_get(f"{OIDC}/certs", self.certs)
        app.router.add_get(f"{OIDC}/auth", self.authorize)
        app.router.add_post(f"{OIDC}/token", self.token)
        app.router.add_get(f"{OIDC}/userinfo", self.userinfo)
        app.router.add_post(f"{OIDC}/revoke", self.revoke)
        app.router.add_post(f"{OIDC}/token/introspect", self.introspect)
        app.router.add_post(f"{OIDC}/ext/ciba/auth", self.ciba)
        app.router.add_get(f"{OIDC}/logout", self.logout)
        app.router.add_post(f"{OIDC}/logout", self.logout)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, ctx.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://{ctx.host}:{port}{REALM}"
        return {"issuer": self.issuer, "client_id": CLIENT_ID}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- OpenID Connect endpoints -----------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        base = self.issuer.removesuffix(REALM)
        return web.json_response({
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}{OIDC}/auth",
            "token_endpoint": f"{base}{OIDC}/token",
            "userinfo_endpoint": f"{base}{OIDC}/userinfo",
            "jwks_uri": f"{base}{OIDC}/certs",
            "revocation_endpoint": f"{base}{OIDC}/revoke",
            "introspection_endpoint": f"{base}{OIDC}/token/introspect",
            "end_session_endpoint": f"{base}{OIDC}/logout",
            "backchannel_authentication_endpoint": f"{base}{OIDC}/ext/ciba/auth",
            "backchannel_token_delivery_modes_supported": ["poll"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", CIBA_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "scope_all"],
            "acr_values_supported": ["eidas1"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
        })

    async def certs(self, request: web.Request) -> web.Response:
        return web.json_response(self.key.jwks())

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        if client_id != CLIENT_ID:
            return web.Response(status=400, text="client_id inconnu de Pro Santé Connect (bac à sable)")
        if not _loopback_redirect(redirect_uri):
            return web.Response(status=400, text="redirect_uri non enregistrée (boucle locale attendue)")

        def back(**params: str) -> web.Response:
            params = {**params, "state": q.get("state", ""), "iss": self.issuer}
            sep = "&" if "?" in redirect_uri else "?"
            raise web.HTTPFound(f"{redirect_uri}{sep}{urllib.parse.urlencode(params)}")

        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return back(error="invalid_request", error_description="response_type=code et scope openid attendus")
        if q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) < 43:
            return back(error="invalid_request", error_description="PKCE S256 obligatoire")
        if self.user is None:
            return back(error="access_denied", error_description="Authentification refusée par le professionnel")
        sid = secrets.token_urlsafe(16)
        now = self.now()
        self.grants[sid] = Grant(sid, self.user, client_id, q.get("scope", ""), q.get("nonce", ""),
                                 secrets.token_urlsafe(32), now + REFRESH_TTL)
        code = secrets.token_urlsafe(32)
        self._codes[code] = PendingCode(sid, client_id, redirect_uri, q["code_challenge"], now + CODE_TTL)
        self.logins += 1
        log.info("PSC simulé : e-CPS approuvée pour %s", self.user.national_id)
        return back(code=code)

    async def ciba(self, request: web.Request) -> web.Response:
        """OpenID CIBA (poll mode): a push to the professional's e-CPS app, approved at the second poll."""
        form = await request.post()
        if str(form.get("client_id", "")) != CLIENT_ID:
            return _oauth_error("invalid_client", "client inconnu", status=401)
        if "openid" not in str(form.get("scope", "")).split():
            return _oauth_error("invalid_scope", "scope openid attendu")
        hint = str(form.get("login_hint", ""))
        user = next((u for u in TEST_USERS if hint in (u.national_id, u.rpps)), None)
        if user is None:
            return _oauth_error("unknown_user_id", "professionnel inconnu de Pro Santé Connect")
        self.pushes.append({"national_id": user.national_id, "binding_message": str(form.get("binding_message", ""))})
        auth_req_id = secrets.token_urlsafe(24)
        sid = ""
        if self.user is not None:  # the professional approves on the app (None: refuses)
            sid = secrets.token_urlsafe(16)
            self.grants[sid] = Grant(sid, user, CLIENT_ID, str(form.get("scope", "")), "",
                                     secrets.token_urlsafe(32), self.now() + REFRESH_TTL)
        self._pushes[auth_req_id] = [sid, 0, self.now() + 120]
        return web.json_response({"auth_req_id": auth_req_id, "expires_in": 120, "interval": 1})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        if client_id != CLIENT_ID:
            return _oauth_error("invalid_client", "client inconnu", status=401)
        grant_type = str(form.get("grant_type", ""))
        if grant_type == CIBA_GRANT:
            push = self._pushes.get(str(form.get("auth_req_id", "")))
            if push is None or push[2] < self.now():
                return _oauth_error("expired_token", "demande e-CPS inconnue ou expirée")
            if not push[0]:
                self._pushes.pop(str(form.get("auth_req_id", "")), None)
                return _oauth_error("access_denied", "refusée sur l'application e-CPS")
            push[1] += 1
            if push[1] < 2:
                return _oauth_error("authorization_pending", "en attente de l'application e-CPS")
            self._pushes.pop(str(form.get("auth_req_id", "")), None)
            self.logins += 1
            return web.json_response(self._issue(self.grants[push[0]], with_id_token=True),
                                     headers={"Cache-Control": "no-store"})
        if grant_type == "authorization_code":
            pending = self._codes.pop(str(form.get("code", "")), None)  # a code is used once
            if pending is None or pending.expires < self.now() or pending.client_id != client_id:
                return _oauth_error("invalid_grant", "code inconnu, expiré ou déjà utilisé")
            if str(form.get("redirect_uri", "")) != pending.redirect_uri:
                return _oauth_error("invalid_grant", "redirect_uri différente de celle de l'autorisation")
            verifier = str(form.get("code_verifier", ""))
            if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(s256(verifier), pending.challenge):
                return _oauth_error("invalid_grant", "code_verifier PKCE refusé")
            grant = self.grants[pending.grant_sid]
            return web.json_response(self._issue(grant, with_id_token=True), headers={"Cache-Control": "no-store"})
        if grant_type == "refresh_token":
            presented = str(form.get("refresh_token", ""))
            found = next((g for g in self.grants.values()
                          if hmac.compare_digest(g.refresh_token, presented)), None) if presented else None
            if found is None or found.revoked or found.refresh_expires < self.now() or found.client_id != client_id:
                return _oauth_error("invalid_grant", "jeton de rafraîchissement invalide, expiré ou révoqué")
            grant = found
            if grant.revoked or grant.refresh_expires < self.now() or grant.client_id != client_id:
                return _oauth_error("invalid_grant", "jeton de rafraîchissement invalide, expiré ou révoqué")
            grant.refresh_token = secrets.token_urlsafe(32)  # rotated
            grant.refresh_expires = self.now() + REFRESH_TTL
            return web.json_response(self._issue(grant, with_id_token=True), headers={"Cache-Control": "no-store"})
        return _oauth_error("unsupported_grant_type", grant_type or "grant_type absent")

    def _issue(self, grant: Grant, *, with_id_token: bool) -> dict[str, Any]:
        now = int(self.now())
        jti = secrets.token_urlsafe(16)
        grant.access_ids.add(jti)
        user = grant.user
        access = self.key.sign({
            "iss": self.issuer, "sub": f"f:sandbox:{user.national_id}", "aud": ["account", grant.client_id],
            "azp": grant.client_id, "exp": now + ACCESS_TTL, "iat": now, "jti": jti, "sid": grant.sid,
            "scope": grant.scope, "acr": "eidas1", "preferred_username": user.national_id,
            "SubjectNameID": user.national_id, "typ": "Bearer"})
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL,
                                  "refresh_token": grant.refresh_token,
                                  "refresh_expires_in": int(grant.refresh_expires - now), "scope": grant.scope}
        if with_id_token:
            answer["id_token"] = self.key.sign({
                "iss": self.issuer, "sub": f"f:sandbox:{user.national_id}", "aud": grant.client_id,
                "azp": grant.client_id, "exp": now + ACCESS_TTL, "iat": now, "auth_time": now, "sid": grant.sid,
                "nonce": grant.nonce, "acr": "eidas1", "preferred_username": user.national_id,
                "SubjectNameID": user.national_id})
        return answer

    def active_grant(self, access_token: str) -> Grant | None:
        """The grant behind an access token this provider signed, still valid and not revoked."""
        try:
            claims = verify(access_token, self.key.jwks(), now=_datetime(self.now()), issuer=self.issuer)
        except TokenInvalid:
            return None
        grant = self.grants.get(str(claims.get("sid", "")))
        if grant is None or grant.revoked or claims.get("jti") not in grant.access_ids:
            return None
        return grant

    async def userinfo(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self.active_grant(token) if scheme.lower() == "bearer" else None
        if grant is None:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return web.json_response(userinfo_claims(grant.user))

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        presented = str(form.get("token", ""))
        for grant in self.grants.values():
            if presented and (hmac.compare_digest(grant.refresh_token, presented)
                              or (self.active_grant(presented) is grant)):
                grant.revoked = True
        return web.Response(status=200)  # RFC 7009: 200 whether or not the token was known

    async def introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.active_grant(str(form.get("token", "")))
        if grant is None:
            return web.json_response({"active": False})
        return web.json_response({"active": True, "iss": self.issuer, "client_id": grant.client_id,
                                  "sub": f"f:sandbox:{grant.user.national_id}",
                                  "SubjectNameID": grant.user.national_id, "scope": grant.scope})

    async def logout(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        hint = params.get("id_token_hint", "")
        try:
            claims = verify(hint, self.key.jwks(), now=_datetime(self.now()), issuer=self.issuer, leeway=REFRESH_TTL)
        except TokenInvalid:
            return web.Response(status=400, text="id_token_hint invalide")
        grant = self.grants.get(str(claims.get("sid", "")))
        if grant is not None:
            grant.revoked = True
        target = params.get("post_logout_redirect_uri", "")
        if target and _loopback_redirect(target):
            raise web.HTTPFound(target)
        return web.Response(text="Déconnecté de Pro Santé Connect (bac à sable).")

    # --- control routes --------------------------------------------------------------------------------

    def control_routes(self, table: RouteTable) -> None:
        async def choose_user(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            if body.get("refuse"):
                self.user = None
                return web.json_response({"user": None})
            rpps = str(body.get("rpps", ""))
            found = next((u for u in TEST_USERS if u.rpps == rpps), None)
            if found is None:
                raise InvalidInput.field("rpps", "RPPS d'un professionnel de test attendu : "
                                                 + ", ".join(u.rpps for u in TEST_USERS))
            self.user = found
            return web.json_response({"user": found.rpps})

        async def sessions(request: web.Request) -> web.Response:
            return web.json_response({"logins": self.logins, "items": [
                {"sid": g.sid, "rpps": g.user.rpps, "revoked": g.revoked, "access_tokens": len(g.access_ids)}
                for g in self.grants.values()]})

        async def advance(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            seconds = body.get("advance_seconds")
            if not isinstance(seconds, int | float) or seconds < 0:
                raise InvalidInput.field("advance_seconds", "Nombre de secondes positif attendu.")
            self.skew += float(seconds)
            return web.json_response({"skew_seconds": self.skew})

        async def revoke_user(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            rpps = str(body.get("rpps", ""))
            count = 0
            for grant in self.grants.values():
                if grant.user.rpps == rpps and not grant.revoked:
                    grant.revoked, count = True, count + 1
            return web.json_response({"revoked": count})

        table.post("/_sandbox/psc/user", choose_user, tag="sandbox",
                   summary="Choisir le professionnel de test que l'e-CPS simulée approuve (ou refuser)",
                   request_schema={"type": "object", "properties": {"rpps": {"type": "string"},
                                                                    "refuse": {"type": "boolean"}}},
                   responses={200: json_response("Professionnel choisi")})
        async def pushes(request: web.Request) -> web.Response:
            return web.json_response({"items": list(self.pushes)})

        table.get("/_sandbox/psc/pushes", pushes, tag="sandbox",
                  summary="Demandes envoyées à l'application e-CPS simulée (CIBA)",
                  responses={200: json_response("Demandes e-CPS")})
        table.get("/_sandbox/psc/sessions", sessions, tag="sandbox", summary="Connexions PSC simulées (sans jetons)",
                  responses={200: json_response("Connexions")})
        table.post("/_sandbox/psc/clock", advance, tag="sandbox", summary="Avancer l'horloge du PSC simulé",
                   request_schema={"type": "object", "required": ["advance_seconds"],
                                   "properties": {"advance_seconds": {"type": "number"}}},
                   responses={200: json_response("Décalage appliqué")})
        table.post("/_sandbox/psc/revoke", revoke_user, tag="sandbox",
                   summary="Révoquer les sessions PSC d'un professionnel (déconnexion ailleurs)",
                   request_schema={"type": "object", "required": ["rpps"],
                                   "properties": {"rpps": {"type": "string"}}},
                   responses={200: json_response("Sessions révoquées")})


def _loopback_redirect(uri: str) -> bool:
    """RFC 8252 §7.3: a native app's redirect to the loopback interface, any port."""
    parts = urllib.parse.urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1") and not parts.fragment


def _oauth_error(code: str, description: str, *, status: int = 400) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=status,
                             headers={"Cache-Control": "no-store"})


def _datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
