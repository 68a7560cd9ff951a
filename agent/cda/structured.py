"""Structured (N3) documents beyond the note de vaccination: synthèse, CSE CS8/CS9/CS24, mesures de l'enfant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.errors import InvalidInput

if TYPE_CHECKING:
    from agent.cda.service import BuiltDocument, CdaService


def build(service: CdaService, kind: str, patient: dict[str, Any], author: dict[str, Any],
          data: dict[str, Any]) -> BuiltDocument:
    raise InvalidInput.field("kind", f"Le document {kind!r} n'est pas encore produit par cet agent.",
                             code="kind_not_available")
