"""Decoding the base64 fields of a request (documents, data to sign), with a 422 that names the field."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from agent.errors import InvalidInput


def decode_base64_field(value: Any, field: str, missing: str) -> bytes:
    """``value`` decoded; ``missing`` (French) when it is absent or empty, "Base64 invalide." when it is not base64."""
    if not isinstance(value, str) or not value:
        raise InvalidInput.field(field, missing)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput.field(field, "Base64 invalide.") from exc
