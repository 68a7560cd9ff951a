"""Card routes: the readers and cards, the CPS PIN session, and signatures with the CPS signature key.

``POST /v1/sign`` signs off the event loop (a card takes its time): raw and CMS signatures on the card's own threads,
XAdES (which also canonicalises the document) in a worker thread. It never returns or logs what it signed beyond the
signature itself. Formats: ``xades-enveloped`` (an XML document, signed in place), ``xades-detached`` (IHE DSG style
manifest over the data), ``cms-detached`` (PKCS#7 SignedData without content) and ``raw`` (the bare RSA signature of
the data with SHA-256).
"""

from __future__ import annotations

import asyncio
import base64
import functools
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from agent.api.context import SERVICES, Services
from agent.api.guard import read_json
from agent.api.psc import professional_context
from agent.api.spec import RouteTable, json_response, problem_response
from agent.cards.cms import sign_detached
from agent.cards.service import CardService
from agent.domain.encoding import decode_base64_field
from agent.errors import InvalidInput
from agent.xml.safe import parse
from agent.xml.signing import sign_xades_detached, sign_xades_enveloped

FORMATS = ("xades-enveloped", "xades-detached", "cms-detached", "raw")

HOLDER_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {k: {"type": "string"} for k in ("rpps", "family_name", "given_name", "profession", "specialty")},
}
CPS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["present", "logged_in"],
    "properties": {"present": {"type": "boolean"}, "reader": {"type": ["string", "null"]}, "holder": HOLDER_SCHEMA,
                   "logged_in": {"type": "boolean"}, "pin_tries_left": {"type": ["integer", "null"]},
                   "error": {"type": "string"}},
}
CARDS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["readers", "cps", "vitale"],
    "properties": {
        "service": {"type": "object", "properties": {"backend": {"type": "string"}, "state": {"type": "string"},
                                                     "detail": {"type": "string"}}},
        "readers": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "card": {"enum": ["cps", "vitale", "unknown", None]}}}},
        "cps": CPS_SCHEMA,
        "vitale": {"type": "object", "properties": {
            "present": {"type": "boolean"}, "reader": {"type": ["string", "null"]},
            "beneficiaries": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "nir": {"type": "string"}, "family_name": {"type": "string"},
                "given_names": {"type": "array", "items": {"type": "string"}}, "birth_name": {"type": "string"},
                "birth_date": {"type": "string"}, "birth_rank": {"type": "integer"},
                "quality": {"type": "string"}}}},
            "error": {"type": "string"}}},
    },
}
SIGN_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["format"],
    "properties": {"format": {"enum": list(FORMATS)}, "data_base64": {"type": "string"}, "xml": {"type": "string"},
                   "uri": {"type": "string", "description": "xades-detached: the reference URI of the data"}},
}
SIGN_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["format", "certificate_pem"],
    "properties": {"format": {"type": "string"}, "signature_base64": {"type": "string"}, "xml": {"type": "string"},
                   "certificate_pem": {"type": "string"}, "algorithm": {"type": "string"}},
}


def _cards(services: Services) -> CardService:
    return services.cards


async def get_cards(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    snapshot = _cards(services).snapshot()
    # Which context the professional acts in: "cps" (a card in a reader), "psc" (Pro Santé Connect), or None.
    snapshot["professional_context"] = professional_context(services)["context"]
    return web.json_response(snapshot)


async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    pin = body.get("pin")
    if not isinstance(pin, str):
        raise InvalidInput.field("pin", "Le code PIN est requis.")
    return web.json_response(await _cards(request.app[SERVICES]).login(pin))


async def logout(request: web.Request) -> web.Response:
    return web.json_response(await _cards(request.app[SERVICES]).logout())


def _data(body: dict[str, Any]) -> bytes:
    return decode_base64_field(body.get("data_base64"), "data_base64",
                               "Les données à signer (base64) sont requises pour ce format.")


async def sign(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    fmt = body.get("format")
    if fmt not in FORMATS:
        raise InvalidInput.field("format", "Format inconnu : xades-enveloped, xades-detached, cms-detached ou raw.")
    cards = _cards(services)
    signer = cards.require_signer()
    answer: dict[str, Any] = {"format": fmt, "certificate_pem": _certificate_pem(signer.certificate_der),
                              "algorithm": signer.algorithm.value}
    if fmt == "raw":
        data = _data(body)
        signature = await cards.on_card_thread(signer.sign, data)
        answer["signature_base64"] = base64.b64encode(signature).decode()
    elif fmt == "cms-detached":
        data = _data(body)
        der = await cards.on_card_thread(sign_detached, data, signer, services.clock.now())
        answer["signature_base64"] = base64.b64encode(der).decode()
    elif fmt == "xades-enveloped":
        text = body.get("xml")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput.field("xml", "Le document XML à signer est requis pour ce format.")
        root = parse(text.encode("utf-8"), what="document à signer")
        signed = await asyncio.to_thread(sign_xades_enveloped, root, signer)
        answer["xml"] = etree.tostring(signed, encoding="unicode")
    else:
        data = _data(body)
        uri = body.get("uri") or "document"
        if not isinstance(uri, str) or len(uri) > 256:
            raise InvalidInput.field("uri", "URI de référence invalide.")
        signed = await asyncio.to_thread(sign_xades_detached, [(uri, data)], signer)
        answer["xml"] = etree.tostring(signed, encoding="unicode")
    return web.json_response(answer)


@functools.lru_cache(maxsize=8)
def _certificate_pem(der: bytes) -> str:
    """The signing certificate as PEM: decoded once per card, not at every signature."""
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


CARD_PROBLEMS = {503: problem_response("Carte absente, non déverrouillée, bloquée, lecteur occupé ou service PC/SC "
                                       "arrêté (code : cps_absent, cps_not_logged_in, cps_blocked, reader_busy, "
                                       "pcsc_unavailable)")}


def register(table: RouteTable) -> None:
    table.get("/v1/cards", get_cards, summary="Lecteurs, carte CPS et carte Vitale", tag="cards",
              responses={200: json_response("Lecteurs et cartes", CARDS_SCHEMA), **CARD_PROBLEMS})
    table.post("/v1/cps/login", login, summary="Saisir le code PIN de la carte CPS", tag="cards",
               request_schema={"type": "object", "required": ["pin"], "properties": {
                   "pin": {"type": "string", "pattern": "^[0-9]{4,8}$"}}},
               request_examples={"pin": {"summary": "Le code PIN de la CPS (jamais journalisé ni conservé)",
                                         "value": {"pin": "1234"}}},
               responses={200: json_response("Session CPS ouverte", CPS_SCHEMA),
                          401: problem_response("Code PIN incorrect (code pin_invalid, tries_left)"),
                          422: problem_response("Code PIN mal formé"), **CARD_PROBLEMS})
    table.post("/v1/cps/logout", logout, summary="Fermer la session de la carte CPS", tag="cards",
               request_schema={"type": "object"},
               responses={200: json_response("Session CPS fermée", CPS_SCHEMA)})
    table.post("/v1/sign", sign, summary="Signer avec la clé de signature de la carte CPS", tag="cards",
               request_schema=SIGN_REQUEST,
               responses={200: json_response("Signature", SIGN_RESPONSE),
                          422: problem_response("Requête invalide"), **CARD_PROBLEMS})
