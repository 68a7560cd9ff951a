"""The DMP's Pro Santé Connect mode ("Espace de Confiance API PSC", [CDT] 0.1-190, SC.DMP/PSC.40): a DMP access
token obtained from the professional's PSC access token, with the same TLS client certificate as the DMP calls.

What is public: the CNDA test book asks that "le jeton access_token DMP est obtenu à partir du même certificat
TLS que celui utilisé pour l'appel applicatif vers le DMP", that the VIHF names the professional and the
structure, and that both tokens (PSC's and the DMP's) be shown as proof; its mode column says "Directe via PSC".
What is NOT public (the GIE's integration guide is not published): the token endpoint's address, the request's
form, how the DMP token travels with the SOAP call, and the VIHF's AuthnContextClassRef in this mode. They are
configuration here (``[dmp] psc_token_url``, ``psc_token_header``, ``psc_token_scheme``, ``psc_vihf_mode``,
``psc_authn_context``), with these assumptions, which the sandbox plays:
- the exchange is OAuth 2.0 Token Exchange (RFC 8693): ``grant_type=urn:ietf:params:oauth:grant-type:token-
  exchange``, ``subject_token`` = the PSC access token, ``subject_token_type`` = access_token; over mutual TLS
  with the DMP client certificate, so the DMP can bind its token to that certificate (RFC 8705 ``cnf``);
- the DMP token goes in an HTTP header of every SOAP call (``Authorization: Bearer`` by default);
- the VIHF's Authentification_Mode is DIRECTE (the test book's "Directe via PSC") and the structure's
  certificate signs it (no card in a reader).
Tokens are never logged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.clock import Clock
from agent.dmp.models import Professional
from agent.dmp.transport import Transport
from agent.errors import Unavailable
from agent.logs import get_logger

log = get_logger("dmp")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN, not a secret)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
MARGIN = dt.timedelta(seconds=30)
PscAccessToken = Callable[[str], Awaitable[str | None]]  # RPPS -> the professional's PSC access token, or None


@dataclass(frozen=True, slots=True)
class PscDmpSettings:
    token_url: str
    header: str = "Authorization"
    scheme: str = "Bearer"
    vihf_mode: str = "DIRECTE"
    # No public source: the SAML class of a PSC (e-CPS or CPS through PSC) authentication.
    authn_context: str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


@dataclass
class _Cached:
    psc_token: str = field(repr=False)
    dmp_token: str = field(repr=False)
    expires_at: dt.datetime


class DmpPscTokens:
    """The DMP access token of a professional connected through PSC, exchanged once and kept until near expiry
    (in memory only), exchanged again when PSC's token changes (refresh) or the DMP's expires."""

    def __init__(self, settings: PscDmpSettings, transport: Transport, psc_token: PscAccessToken,
                 clock: Clock) -> None:
        self.settings = settings
        self._transport = transport
        self._psc_token = psc_token
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    def headers(self, dmp_token: str) -> dict[str, str]:
        value = f"{self.settings.scheme} {dmp_token}" if self.settings.scheme else dmp_token
        return {self.settings.header: value}

    async def dmp_token(self, who: Professional) -> str:
        """The DMP token for ``who``; Unavailable (the order waits) when their PSC session is over."""
        rpps = who.national_id[1:]
        psc = await self._psc_token(rpps)
        if psc is None:
            self._cache.pop(rpps, None)
            raise Unavailable("La session Pro Santé Connect du professionnel est terminée : reconnectez-vous "
                              "avec e-CPS.", code="psc_session_expired")
        cached = self._cache.get(rpps)
        now = self._clock.now()
        if cached is not None and cached.psc_token == psc and cached.expires_at - MARGIN > now:
            return cached.dmp_token
        status, body = await self._transport.post_form(self.settings.token_url, {
            "grant_type": TOKEN_EXCHANGE, "subject_token": psc, "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE})
        token = body.get("access_token")
        if status != 200 or not isinstance(token, str) or not token:
            log.warning("DMP : échange du jeton Pro Santé Connect refusé (HTTP %s, %s)", status,
                        body.get("error", "?"))
            # Unavailable: the order waits (waiting_card) for the professional to connect again.
            raise Unavailable("Le DMP a refusé le jeton Pro Santé Connect du professionnel : reconnectez-vous "
                              "avec e-CPS.", code="dmp_psc_refused")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 60.0
        self._cache[rpps] = _Cached(psc, token, now + dt.timedelta(seconds=seconds))
        log.info("DMP : jeton d'accès obtenu par Pro Santé Connect (RPPS %s)", rpps)
        return token
