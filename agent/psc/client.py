"""The OpenID Connect client of Pro Santé Connect: discovery, authorization code with PKCE, tokens, userinfo.

The flow is the native-app one (RFC 8252): the system browser opens PSC's authorization page, the professional
authenticates there (CPS card, or the e-CPS app by push or QR code: PSC's page offers them, the agent never sees
them), and PSC redirects to a loopback URI on this workstation with the code. Checked here: ``state`` (by the
caller, which keeps the pending logins), PKCE S256 (RFC 7636), the ``iss`` of the redirect (RFC 9207) when PSC
sends it, and the id_token's signature against the provider's JWKS, its ``iss``, ``aud`` (our client id), ``exp``
and ``nonce``. ``http`` is accepted only for a loopback issuer (the sandbox); anything else needs ``https``.

Tokens never reach the logs: errors name what was refused, never the token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.clock import Clock
from agent.config import is_loopback_host
from agent.errors import AccessRefused, AuthenticationRequired, ConfigError, ServiceUnreachable
from agent.logs import get_logger
from agent.psc.jose import TokenInvalid, verify

log = get_logger("psc")
MAX_ANSWER = 256 * 1024


@dataclass(frozen=True, slots=True)
class PscSettings:
    issuer: str
    client_id: str
    client_secret: str = ""  # empty: public client (PKCE only)
    scopes: tuple[str, ...] = ("openid", "scope_all")
    acr_values: str = "eidas1"
    authorization_endpoint: str = ""  # overrides the discovered one (PSC's "wallet" page)
    ca_file: str = ""
    timeout_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    revocation_endpoint: str = ""
    end_session_endpoint: str = ""
    backchannel_authentication_endpoint: str = ""


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What one login started with, kept in memory until PSC redirects back (by ``state``)."""

    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    started: float  # monotonic

    @classmethod
    def new(cls, redirect_uri: str, started: float) -> PendingLogin:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64), redirect_uri,
                   started)

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str = field(repr=False)
    expires_at: dt.datetime
    refresh_token: str = field(default="", repr=False)
    refresh_expires_at: dt.datetime | None = None
    id_token: str = field(default="", repr=False)


def check_issuer_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    raise ConfigError("adresse https attendue (http seulement sur la boucle locale)", key="psc.issuer")


class PscClient:
    def __init__(self, settings: PscSettings, clock: Clock) -> None:
        check_issuer_url(settings.issuer)
        self.settings = settings
        self.clock = clock
        self._ssl: ssl.SSLContext | None = None
        if settings.issuer.startswith("https"):
            self._ssl = ssl.create_default_context(cafile=settings.ca_file or None)
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._session: aiohttp.ClientSession | None = None
        self._metadata: ProviderMetadata | None = None
        self._jwks: dict[str, Any] | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True))
        return self._session

    async def _json(self, method: str, url: str, *, data: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None, accept_status: tuple[int, ...] = (200,)
                    ) -> tuple[int, dict[str, Any]]:
        try:
            async with self._http().request(method, url, data=data, headers=headers, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_ANSWER + 1)
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("Pro Santé Connect injoignable : %s", type(exc).__name__)
            raise ServiceUnreachable("Pro Santé Connect est injoignable.", service="psc", code="psc_unreachable",
                                     maybe_delivered=False) from exc
        if len(raw) > MAX_ANSWER:
            raise AuthenticationRequired("Réponse de Pro Santé Connect trop volumineuse.", code="psc_refused")
        body: dict[str, Any] = {}
        if raw:
            try:
                decoded = json.loads(raw)
                body = decoded if isinstance(decoded, dict) else {}
            except ValueError:
                body = {}
        if status not in accept_status:
            error = str(body.get("error", f"HTTP {status}"))
            log.warning("Pro Santé Connect a refusé la requête (%s)", error)
            raise AuthenticationRequired(f"Pro Santé Connect a refusé la demande ({error}).", code="psc_refused")
        return status, body

    # --- discovery -------------------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None:
            url = f"{self.settings.issuer.rstrip('/')}/.well-known/openid-configuration"
            _, doc = await self._json("GET", url)
            if doc.get("issuer") != self.settings.issuer:
                # OpenID Connect Discovery §4.3: the document must name the issuer we asked.
                raise AuthenticationRequired("Configuration de Pro Santé Connect incohérente (issuer).",
                                             code="psc_refused")
            needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if any(not isinstance(doc.get(k), str) for k in needed):
                raise AuthenticationRequired("Configuration de Pro Santé Connect incomplète.", code="psc_refused")
            endpoints = {k: str(doc.get(k) or "") for k in (
                "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                "revocation_endpoint", "end_session_endpoint", "backchannel_authentication_endpoint")}
            for url in filter(None, endpoints.values()):
                check_issuer_url(url)
            if self.settings.authorization_endpoint:
                endpoints["authorization_endpoint"] = self.settings.authorization_endpoint
            self._metadata = ProviderMetadata(issuer=self.settings.issuer, **endpoints)
        return self._metadata

    async def _keys(self, *, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            _, self._jwks = await self._json("GET", (await self.metadata()).jwks_uri)
        return self._jwks

    async def verify_token(self, token: str, *, audience: str | None = None, nonce: str | None = None
                           ) -> dict[str, Any]:
        """Claims of a JWT from this provider, checked; a key rotation is followed once (JWKS fetched again)."""
        now = self.clock.now()
        for attempt in (0, 1):
            try:
                return verify(token, await self._keys(refresh=attempt == 1), now=now, issuer=self.settings.issuer,
                              audience=audience, nonce=nonce)
            except TokenInvalid as exc:
                if attempt == 1 or "signature" not in str(exc):
                    log.warning("jeton Pro Santé Connect refusé : %s", exc)
                    raise AuthenticationRequired("Jeton Pro Santé Connect refusé.", code="psc_token_invalid") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the flow --------------------------------------------------------------------------------------

    async def authorization_url(self, pending: PendingLogin) -> str:
        meta = await self.metadata()
        params = {"response_type": "code", "client_id": self.settings.client_id,
                  "redirect_uri": pending.redirect_uri, "scope": " ".join(self.settings.scopes),
                  "state": pending.state, "nonce": pending.nonce, "code_challenge": pending.challenge,
                  "code_challenge_method": "S256"}
        if self.settings.acr_values:
            params["acr_values"] = self.settings.acr_values
        sep = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{sep}{urllib.parse.urlencode(params)}"

    def _client_auth(self, form: dict[str, str]) -> dict[str, str]:
        form["client_id"] = self.settings.client_id
        if self.settings.client_secret:
            form["client_secret"] = self.settings.client_secret
        return form

    async def exchange(self, pending: PendingLogin, code: str, iss: str | None) -> tuple[TokenSet, dict[str, Any]]:
        """The tokens for an authorization code, and the id_token's verified claims."""
        if iss is not None and iss != self.settings.issuer:
            raise AccessRefused("Réponse d'un autre fournisseur d'identité que Pro Santé Connect.",
                                code="psc_issuer_mismatch")
        meta = await self.metadata()
        _, body = await self._json("POST", meta.token_endpoint, data=self._client_auth({
            "grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.verifier}))
        tokens = self._token_set(body)
        if not tokens.id_token:
            raise AuthenticationRequired("Pro Santé Connect n'a pas donné d'id_token.", code="psc_token_invalid")
        claims = await self.verify_token(tokens.id_token, audience=self.settings.client_id, nonce=pending.nonce)
        return tokens, claims

    # --- the e-CPS push without a browser: OpenID CIBA Core 1.0, poll mode -------------------------------

    async def ciba_start(self, login_hint: str, binding_message: str) -> tuple[str, float, float]:
        """Ask PSC to push an authentication request to the professional's e-CPS app: (auth_req_id, interval,
        expires_in). ANS documents CIBA for PSC; its exact parameters were not read: the standard's are used."""
        meta = await self.metadata()
        if not meta.backchannel_authentication_endpoint:
            raise AuthenticationRequired("Pro Santé Connect ne propose pas la notification e-CPS (CIBA).",
                                         code="psc_push_unsupported")
        _, body = await self._json("POST", meta.backchannel_authentication_endpoint, data=self._client_auth({
            "scope": " ".join(self.settings.scopes), "login_hint": login_hint,
            "binding_message": binding_message}))
        auth_req_id = body.get("auth_req_id")
        if not isinstance(auth_req_id, str) or not auth_req_id:
            raise AuthenticationRequired("Réponse CIBA de Pro Santé Connect invalide.", code="psc_refused")
        interval, expires = body.get("interval", 5), body.get("expires_in", 120)
        return (auth_req_id, float(interval) if isinstance(interval, int | float) else 5.0,
                float(expires) if isinstance(expires, int | float) else 120.0)

    async def ciba_poll(self, auth_req_id: str) -> tuple[TokenSet, dict[str, Any]] | None:
        """The tokens once the professional approved on the app; None while pending (or asked to slow down)."""
        meta = await self.metadata()
        _, body = await self._json("POST", meta.token_endpoint, data=self._client_auth({
            "grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": auth_req_id}),
            accept_status=(200, 400))
        if body.get("error") in ("authorization_pending", "slow_down"):
            return None
        if "error" in body:
            raise AuthenticationRequired("Connexion e-CPS refusée ou expirée.", code="psc_denied")
        tokens = self._token_set(body)
        if not tokens.id_token:
            raise AuthenticationRequired("Pro Santé Connect n'a pas donné d'id_token.", code="psc_token_invalid")
        return tokens, await self.verify_token(tokens.id_token, audience=self.settings.client_id)

    async def refresh(self, tokens: TokenSet) -> tuple[TokenSet, dict[str, Any] | None]:
        meta = await self.metadata()
        _, body = await self._json("POST", meta.token_endpoint, data=self._client_auth({
            "grant_type": "refresh_token", "refresh_token": tokens.refresh_token}))
        fresh = self._token_set(body, previous=tokens)
        claims = None
        if fresh.id_token and fresh.id_token != tokens.id_token:
            claims = await self.verify_token(fresh.id_token, audience=self.settings.client_id)
        return fresh, claims

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        meta = await self.metadata()
        if not meta.userinfo_endpoint:
            return {}
        _, body = await self._json("GET", meta.userinfo_endpoint,
                                   headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        return body

    async def revoke(self, token: str) -> None:
        meta = await self.metadata()
        if meta.revocation_endpoint and token:
            await self._json("POST", meta.revocation_endpoint, data=self._client_auth({"token": token}),
                             accept_status=(200, 204))

    async def end_session_url(self, id_token: str) -> str:
        meta = await self.metadata()
        if not meta.end_session_endpoint:
            return ""
        return f"{meta.end_session_endpoint}?{urllib.parse.urlencode({'id_token_hint': id_token})}"

    def _token_set(self, body: Mapping[str, Any], previous: TokenSet | None = None) -> TokenSet:
        access = body.get("access_token")
        if not isinstance(access, str) or str(body.get("token_type", "")).lower() != "bearer":
            raise AuthenticationRequired("Réponse de jeton Pro Santé Connect invalide.", code="psc_token_invalid")
        now = self.clock.now()
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        refresh = body.get("refresh_token")
        refresh_in = body.get("refresh_expires_in")
        refresh_expires = (now + dt.timedelta(seconds=float(refresh_in))
                           if isinstance(refresh_in, int | float) and refresh_in > 0 else None)
        return TokenSet(
            access_token=access, expires_at=now + dt.timedelta(seconds=lifetime),
            refresh_token=refresh if isinstance(refresh, str) else (previous.refresh_token if previous else ""),
            refresh_expires_at=refresh_expires if isinstance(refresh, str) else (
                previous.refresh_expires_at if previous else None),
            id_token=str(body.get("id_token") or (previous.id_token if previous else "")))


def read_secret(path: str) -> str:
    """The client secret from its file (never from the configuration itself)."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"secret client illisible : {exc.strerror}", key="psc.client_secret_file") from exc
