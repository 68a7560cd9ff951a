"""The one adapter over joserfc (JWS/JWK/JWT): sign tokens (the simulated PSC) and verify them (the agent).

PSC signs its id_token and access_token with RS256 and publishes its keys at ``jwks_uri``
(``.well-known/openid-configuration``). Verification checks the signature against those keys only, the algorithm
(RS256/ES256/PS256, never ``none`` nor HMAC: an attacker could sign with the public key), and the registered claims
asked for (iss, aud, exp, nonce) against the injected clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from joserfc.jwt import JWTClaimsRegistry

ALGORITHMS = ("RS256", "PS256", "ES256")
MAX_TOKEN_CHARS = 16_384


class TokenInvalid(Exception):
    """A token that must not be trusted; the message says why in English (logs), never the token itself."""


class SigningKey:
    """An RSA key that signs JWTs and publishes its public half as a JWKS (the simulated PSC)."""

    def __init__(self, key: RSAKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(RSAKey.generate_key(2048, auto_kid=True))

    @property
    def kid(self) -> str:
        return str(self._key.kid)

    def jwks(self) -> dict[str, Any]:
        public = dict(self._key.as_dict(private=False))
        public.update({"use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def sign(self, claims: Mapping[str, Any], *, typ: str = "JWT") -> str:
        return jwt.encode({"alg": "RS256", "kid": self.kid, "typ": typ}, dict(claims), self._key)


def verify(token: str, jwks: Mapping[str, Any], *, now: dt.datetime, issuer: str, audience: str | None = None,
           nonce: str | None = None, leeway: int = 30) -> dict[str, Any]:
    """The claims of ``token`` once its signature (by one of ``jwks``) and claims are checked; else TokenInvalid.

    ``exp`` is required; ``aud`` and ``nonce`` are checked when given (``aud`` may be a list holding it)."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenInvalid("not a compact JWS")
    try:
        keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenInvalid(f"signature refused ({type(exc).__name__})") from exc
    claims: dict[str, Any] = dict(decoded.claims)
    options: dict[str, Any] = {"iss": {"essential": True, "value": issuer}, "exp": {"essential": True}}
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    registry = JWTClaimsRegistry(now=int(now.timestamp()), leeway=leeway, **options)
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise TokenInvalid(f"claims refused ({type(exc).__name__}: {getattr(exc, 'description', '')})") from exc
    return claims
