"""Document routes: build a CDA without sending it (``POST /v1/cda``), and validate one (``POST /v1/cda/validate``).

Building and validation run in a worker thread (Saxon and lxml are blocking); the answer carries the CDA, its
identifiers and the CI-SIS report. Nothing of the document is logged.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import read_json
from agent.api.spec import RouteTable, json_response, problem_response
from agent.cda.prefill import prefill_cse
from agent.cda.render import CSP, render_html, render_pdf
from agent.cda.service import KINDS, CdaService, cse_notice_for_cda, cse_notice_json, decode_base64
from agent.errors import InvalidInput, Unavailable

FINDING = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "description": "xsd, or the schematron's file name"},
        "message": {"type": "string", "description": "the rule's text (French)"},
        "location": {"type": "string", "description": "XPath of the failing node"},
        "role": {"type": "string"},
    },
}
VALIDATION_SCHEMA = {
    "type": "object",
    "required": ["valid", "errors"],
    "properties": {
        "valid": {"type": "boolean"},
        "errors": {"type": "array", "items": FINDING},
        "warnings": {"type": "array", "items": FINDING},
        "checked": {"type": "array", "items": {"type": "string"}},
    },
}
BUILD_REQUEST = {
    "type": "object",
    "required": ["kind", "patient", "author", "data"],
    "properties": {
        "kind": {"enum": list(KINDS)},
        "patient": {"type": "object", "description": "ins, oid, birth_name, given_names, sex, birth_date, "
                                                      "birth_place, used_name?, used_given?, address?"},
        "author": {"type": "object", "description": "rpps, family, given, civility?, title?, profession_code?, "
                                                     "profession_display?, organisation {id, name, address?}"},
        "data": {"type": "object", "description": "n1: {pdf_base64 or content_base64 (PDF, text, RTF, JPEG, "
                                                   "TIFF) + media_type?, type_code, title, service_start, "
                                                   "service_stop?}; vaccination_note: {datamatrix, "
                                                   "administered_at, dose_rank?, ...}; see docs"},
    },
}
BUILD_RESPONSE = {
    "type": "object",
    "required": ["cda_base64", "unique_id", "validation"],
    "properties": {
        "cda_base64": {"type": "string", "contentEncoding": "base64"},
        "unique_id": {"type": "string"},
        "document": {"type": "object"},
        "validation": VALIDATION_SCHEMA,
        "cse_due": {"type": ["object", "null"],
                    "description": "LGC.CSE.04: the certificat de santé this CR d'examen de l'enfant makes due"},
    },
}
VALIDATE_REQUEST = {
    "type": "object",
    "required": ["cda_base64"],
    "properties": {"cda_base64": {"type": "string", "contentEncoding": "base64"}},
}


def _service(request: web.Request) -> CdaService:
    service = request.app[SERVICES].cda
    if service is None:
        raise Unavailable("La production de documents CDA n'est pas active sur cet agent.", code="cda_disabled")
    return service


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise InvalidInput.field(key, "Objet JSON attendu.")
    return value


async def build(request: web.Request) -> web.Response:
    body = await read_json(request)
    service = _service(request)
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise InvalidInput.field("kind", f"Type de document attendu parmi : {', '.join(KINDS)}.")
    built = await service.abuild(kind, _object(body, "patient"), _object(body, "author"), _object(body, "data"))
    answer: dict[str, Any] = {"cda_base64": built.cda_base64, "unique_id": built.unique_id,
                              "document": built.metadata()}
    notice = cse_notice_for_cda(built.cda, str(_object(body, "data").get("exam") or "") or None,
                                cse_address=service.cse_address)
    answer["cse_due"] = cse_notice_json(notice)
    if service.validator is not None:
        answer["validation"] = (await service.avalidate(built.cda)).as_dict()
    else:
        answer["validation"] = {"valid": False, "errors": [], "warnings": [], "checked": [],
                                "unavailable": "kit CI-SIS non configuré (cda.kit_dir)"}
    return web.json_response(answer)


async def prefill(request: web.Request) -> web.Response:
    body = await read_json(request)
    _service(request)
    documents = body.get("documents")
    if not isinstance(documents, list) or len(documents) > 50:
        raise InvalidInput.field("documents", "Liste de 50 documents CDA en base64 au plus.")
    decoded = [decode_base64(d, f"documents[{i}]", "Le document CDA") for i, d in enumerate(documents)]
    data = await asyncio.to_thread(prefill_cse, str(body.get("kind") or ""), decoded)
    return web.json_response({"kind": body.get("kind"), "data": data})


RENDER_CSP = f"{CSP}; frame-ancestors 'none'"


async def render_order(request: web.Request) -> web.Response:
    order_id = request.query.get("order") or ""
    if not order_id:
        raise InvalidInput.field("order", "Identifiant de l'ordre d'envoi dont afficher le document attendu "
                                 "(?order=...), ou POST /v1/cda/render avec cda_base64.")
    cda = await request.app[SERVICES].orders.order_cda(order_id)
    return await _rendered(cda, _format(request, request.query.get("format")))


async def render_posted(request: web.Request) -> web.Response:
    body = await read_json(request)
    cda = await asyncio.to_thread(decode_base64, body.get("cda_base64"), "cda_base64", "Le document CDA")
    return await _rendered(cda, _format(request, request.query.get("format") or body.get("format")))


def _format(request: web.Request, named: Any) -> str:
    """``format`` when given; else PDF when the client accepts PDF and not HTML (``Accept: application/pdf``)."""
    if named:
        return str(named)
    accept = request.headers.get("Accept", "")
    return "pdf" if "application/pdf" in accept and "text/html" not in accept else "html"


async def _rendered(cda: bytes, fmt: str) -> web.Response:
    if fmt == "pdf":
        pdf = await asyncio.to_thread(render_pdf, cda)
        # A BytesIO body: aiohttp writes a large one without holding the event loop.
        return web.Response(body=io.BytesIO(pdf), content_type="application/pdf",
                            headers={"Content-Disposition": "inline; filename=document.pdf"})
    if fmt != "html":
        raise InvalidInput.field("format", "Format de rendu attendu : html ou pdf.")
    page = await asyncio.to_thread(render_html, cda)
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": RENDER_CSP})


async def validate(request: web.Request) -> web.Response:
    body = await read_json(request)
    cda = await asyncio.to_thread(decode_base64, body.get("cda_base64"), "cda_base64", "Le document CDA")
    report = await _service(request).avalidate(cda)
    return web.json_response(report.as_dict())


RENDER_RESPONSES = {
    200: {"description": "Page HTML autonome et inerte (aucun script, aucune ressource externe ; "
                         "Content-Security-Policy default-src 'none'), ou le document en PDF (format=pdf ou "
                         "Accept: application/pdf) : le PDF que porte un document N1 tel quel, sinon la page "
                         "imprimée par Chromium",
          "content": {"text/html": {"schema": {"type": "string"}},
                      "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
    404: problem_response("Ordre inconnu, ou contenu effacé (content_destroyed)"),
    422: problem_response("CDA illisible, format inconnu, impression trop longue (render_pdf_timeout)"),
    503: problem_response("PDF demandé sans Chromium sur le poste (render_pdf_unavailable) ; le HTML reste "
                          "disponible"),
}
FORMAT_PARAMETER = {"name": "format", "in": "query", "schema": {"enum": ["html", "pdf"], "default": "html"},
                    "description": "html (défaut, ou selon l'en-tête Accept) ; pdf : le PDF que porte un document N1, "
                                   "sinon la page imprimée en PDF"}


def register(table: RouteTable) -> None:
    tag = "documents"
    table.get(
        "/v1/cda/render", render_order, summary="Afficher le document d'un ordre d'envoi (HTML ou PDF)", tag=tag,
        parameters=({"name": "order", "in": "query", "required": True, "schema": {"type": "string"},
                     "description": "identifiant de l'ordre d'envoi"}, FORMAT_PARAMETER),
        responses=RENDER_RESPONSES,
    )
    table.post(
        "/v1/cda/render", render_posted, summary="Afficher un document CDA reçu (HTML ou PDF), par exemple un "
        "document du DMP", tag=tag, body="upload", parameters=(FORMAT_PARAMETER,),
        request_schema={"type": "object", "required": ["cda_base64"], "properties": {
            "cda_base64": {"type": "string", "contentEncoding": "base64"}, "format": {"enum": ["html", "pdf"]}}},
        responses=RENDER_RESPONSES,
    )
    table.post(
        "/v1/cda", build, summary="Construire un document CDA (N1 ou N3) sans l'envoyer", tag=tag, body="upload",
        request_schema=BUILD_REQUEST,
        responses={200: json_response("Le CDA, ses identifiants et le rapport CI-SIS", BUILD_RESPONSE),
                   422: problem_response("Données invalides, PDF refusé (not_pdf), DataMatrix illisible"),
                   503: problem_response("Production de documents inactive")},
    )
    table.post(
        "/v1/cda/prefill", prefill, summary="Préremplir un certificat de santé (CS9, CS24) depuis des documents "
        "antérieurs", tag=tag, body="upload",
        request_schema={"type": "object", "required": ["kind", "documents"], "properties": {
            "kind": {"enum": ["cse_cs9", "cse_cs24"]},
            "documents": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}},
        responses={200: json_response("Le data prérempli pour POST /v1/cda (parents, garde, vaccinations, "
                                      "mesures)", {"type": "object"}),
                   422: problem_response("Documents illisibles")},
    )
    table.post(
        "/v1/cda/validate", validate, summary="Valider un CDA (XSD et schématrons CI-SIS)", tag=tag, body="upload",
        request_schema=VALIDATE_REQUEST,
        request_examples={"cda": {"summary": "Un CDA en base64",
                                  "value": {"cda_base64": "PENsaW5pY2FsRG9jdW1lbnQgeG1sbnM9InVybjpobDctb3JnOnYzIi8+"}}},
        responses={200: json_response("Rapport de validation (en français, avec l'emplacement de chaque erreur)",
                                      VALIDATION_SCHEMA),
                   413: problem_response("Document au-delà de cda.max_document_mb (cda_too_large)"),
                   422: problem_response("Base64 ou XML invalide, validation au-delà de son temps "
                                         "(cda_validation_timeout)"),
                   503: problem_response("Kit CI-SIS absent (cda_kit_missing)")},
    )
