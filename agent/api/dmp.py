"""DMP consultation and management routes: TD3.1 search, TD3.2 content (``?as=pdf`` for an N1), multi-select
import, TD3.3a/b visibility, TD3.3c deletion, TD3.3d archiving and un-archiving. Documents added since a date
(FindSubmissionSets) are ``GET .../documents?since=``; replacing a document (TD2.1b) is an order with ``replaces``.

Each handler parses the request and calls the one consultation use case (``agent.audit.consultation``), which
checks the rights (consent, CONF.21, habilitation), calls the DMP, filters and traces. The professional the
VIHF names is the CPS holder. ``GET /v1/dmp/{ins}/access`` belongs to the consent part.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from agent.api.consent import OID_PARAM, REASON_PARAM, request_actor
from agent.api.context import SERVICES
from agent.api.guard import read_json
from agent.api.params import path_ins
from agent.api.spec import RouteTable, json_response, problem_response
from agent.audit.consultation import VISIBILITY_FLAGS, DmpConsultation
from agent.dmp.models import SearchCriteria
from agent.domain.policy import Actor
from agent.errors import FieldError, InvalidInput
from agent.xml.cda_header import extract_pdf

STATUSES = ("approved", "deprecated", "archived")
VISIBILITIES = ("normal", "masked_to_ps", "invisible_to_patient", "invisible_to_legal_reps")
MAX_IMPORT = 50


async def _context(request: web.Request) -> tuple[DmpConsultation, str, str, Actor]:
    ins, oid = path_ins(request)
    consultation = request.app[SERVICES].consultation
    if "oid" not in request.query:  # the OID INSi gave with this INS, so that the LGC need not repeat it
        oid = await consultation.insi_oid(ins) or oid
    actor = await request_actor(request, request.query.get("mode"))
    return consultation, ins, oid, actor


def _list(request: web.Request, name: str) -> tuple[str, ...]:
    return tuple(v for raw in request.query.getall(name, []) for v in raw.split(",") if v)


def _criteria(request: web.Request) -> SearchCriteria:
    statuses = _list(request, "status") or ("approved",)
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise InvalidInput.field("status", f"Statut inconnu : {', '.join(bad)} (attendu : {', '.join(STATUSES)}).")
    visibility = request.query.get("visibility", "")
    if visibility and visibility not in VISIBILITIES:
        raise InvalidInput.field("visibility", f"Visibilité inconnue (attendu : {', '.join(VISIBILITIES)}).")
    return SearchCriteria(type_codes=_list(request, "type"), class_codes=_list(request, "class"),
                          format_codes=_list(request, "format"), statuses=statuses,
                          created_from=request.query.get("from", ""), created_to=request.query.get("to", ""),
                          service_from=request.query.get("service_from", ""),
                          service_to=request.query.get("service_to", ""),
                          author=request.query.get("author", ""), visibility=visibility)


async def search(request: web.Request) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    criteria = _criteria(request)
    limit, offset = _page(request)
    since = request.query.get("since", "")
    if since:  # documents added since a date (the last visit): FindSubmissionSets, [CDT] 3.1-400
        readable = await consultation.added_since(ins, oid, since, actor)
    else:
        readable = await consultation.search(ins, oid, criteria, actor)
    # Newest first; the cursor is the offset of the next page in this order (the registry answers in one go).
    page = readable[offset:offset + limit]
    more = offset + limit < len(readable)
    return web.json_response({"items": [e.as_dict() for e in page],
                              "next_cursor": str(offset + limit) if more else None})


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("cursor", "0"))
    except ValueError as exc:
        raise InvalidInput.field("limit", "limit et cursor sont des nombres entiers.") from exc
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput.field("limit", "limit entre 1 et 500, cursor positif.")
    return limit, offset


async def content(request: web.Request) -> web.StreamResponse:
    consultation, ins, oid, actor = await _context(request)
    _, doc = await consultation.retrieve(ins, oid, request.match_info["entry_uuid"], actor)
    if request.query.get("as") == "pdf":
        return web.Response(body=extract_pdf(doc.content), content_type="application/pdf")
    return web.Response(body=doc.content, content_type="application/xml" if "xml" in doc.mime_type
                        else doc.mime_type or "application/octet-stream")


async def import_documents(request: web.Request) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    body = await read_json(request)
    uuids = body.get("entry_uuids")
    if not isinstance(uuids, list) or not uuids or not all(isinstance(u, str) and u for u in uuids):
        raise InvalidInput.field("entry_uuids", "Liste d'identifiants de documents (entryUUID) attendue.")
    if len(uuids) > MAX_IMPORT:
        raise InvalidInput.field("entry_uuids", f"Au plus {MAX_IMPORT} documents par import.")
    items: list[dict[str, Any]] = []
    for done in await consultation.import_documents(ins, oid, uuids, actor):
        if done.entry is None or done.content is None:
            error = done.error
            items.append({"entry_uuid": done.entry_uuid,
                          "error": {"code": error.code if error else "unknown", "message": error.message
                                    if error else ""}})
        else:
            items.append({**done.entry.as_dict(), "content_base64": base64.b64encode(done.content).decode()})
    return web.json_response({"items": items})


async def visibility(request: web.Request) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    entry_uuid = request.match_info["entry_uuid"]
    body = await read_json(request)
    flags: dict[str, Any] = {k: body[k] for k in VISIBILITY_FLAGS if k in body}
    bad = [k for k, v in flags.items() if not isinstance(v, bool)]
    if not flags or bad:
        raise InvalidInput("Indiquez au moins un réglage de visibilité (true ou false).",
                           errors=[FieldError(k, "true ou false attendu.") for k in bad])
    updated = await consultation.set_visibility(ins, oid, entry_uuid, flags, actor)
    return web.json_response(updated.as_dict() | {"previous_entry_uuid": entry_uuid})


async def authorization(request: web.Request) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    body = await read_json(request)
    status = await consultation.authorize(ins, oid, actor, explicit=body.get("confirm") is True)
    return web.json_response(status.as_dict())


async def archive(request: web.Request) -> web.Response:
    return await _set_archived(request, archived=True)


async def unarchive(request: web.Request) -> web.Response:
    return await _set_archived(request, archived=False)


async def _set_archived(request: web.Request, *, archived: bool) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    entry_uuid = await consultation.set_archived(ins, oid, request.match_info["entry_uuid"], actor, archived=archived)
    return web.json_response({"entry_uuid": entry_uuid, "status": "archived" if archived else "approved"})


async def delete(request: web.Request) -> web.Response:
    consultation, ins, oid, actor = await _context(request)
    entry_uuid = request.match_info["entry_uuid"]
    await consultation.delete(ins, oid, entry_uuid, actor)
    return web.json_response({"entry_uuid": entry_uuid, "deleted": True})


def _q(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


ENTRY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "entry_uuid": {"type": "string"}, "unique_id": {"type": "string"}, "type_code": {"type": "string"},
    "class_code": {"type": "string"}, "title": {"type": "string"}, "author": {"type": "string"},
    "creation_time": {"type": "string"}, "service_start": {"type": "string"}, "service_stop": {"type": "string"},
    "status": {"enum": list(STATUSES)}, "visibility": {"type": "object"}, "format_code": {"type": "string"},
    "size": {"type": "integer"}, "mime_type": {"type": "string"}}}
COMMON = {403: problem_response("Accès au DMP refusé (consentement, habilitation, auteur, DMP bloqué ou accès non "
                                "autorisé : TD0.3)"),
          404: problem_response("Pas de DMP pour ce patient, ou document introuvable"),
          409: problem_response("DMP fermé, ou document déjà visible du patient"),
          422: problem_response("INS ou critère invalide"),
          502: problem_response("Refus du DMP (erreur de registre, faute SOAP)"),
          503: problem_response("DMP injoignable ou non configuré, CPS absente")}


def register(table: RouteTable) -> None:
    tag = "dmp"
    table.get("/v1/dmp/{ins}/documents", search, tag=tag,
              summary="TD3.1 : rechercher les documents du DMP du patient (multicritère)",
              parameters=(OID_PARAM, _q("type", "typeCode (plusieurs : séparés par des virgules)"),
                          _q("class", "classCode"), _q("format", "formatCode"),
                          _q("from", "créé depuis (AAAA-MM-JJ ou RFC 3339)"), _q("to", "créé avant"),
                          _q("service_from", "acte commencé depuis (serviceStartTime)"),
                          _q("service_to", "acte terminé avant (serviceStopTime)"),
                          _q("since", "ajoutés au DMP depuis (RFC 3339 avec fuseau : la dernière visite) ; "
                                      "les autres critères ne s'appliquent pas"),
                          _q("author", "auteur (identifiant national ou nom, % joker)"),
                          _q("status", "statut", enum=list(STATUSES)), _q("visibility", "visibilité",
                                                                         enum=list(VISIBILITIES)),
                          _q("mode", "mode d'accès", enum=["normal", "bris_de_glace", "centre_15"]),
                          REASON_PARAM,
                          _q("limit", "taille de page (1-500, défaut 50)", type="integer"),
                          _q("cursor", "page suivante (next_cursor de la réponse précédente)")),
              responses={200: json_response("Documents", {"type": "object", "properties": {
                  "items": {"type": "array", "items": ENTRY_SCHEMA}, "next_cursor": {"type": ["string", "null"]}}}),
                  **COMMON})
    table.get("/v1/dmp/{ins}/documents/{entry_uuid}/content", content, tag=tag,
              summary="TD3.2 : le document (CDA), ou son PDF avec ?as=pdf pour un CDA N1",
              parameters=(OID_PARAM, _q("as", "pdf : extraire le PDF d'un CDA N1", enum=["pdf"])),
              responses={200: {"description": "Le document", "content": {
                  "application/xml": {"schema": {"type": "string"}},
                  "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                  404: problem_response("Document introuvable"), **COMMON})
    table.post("/v1/dmp/{ins}/documents/import", import_documents, tag=tag,
               summary="Récupérer plusieurs documents du DMP pour les intégrer au dossier local",
               parameters=(OID_PARAM,),
               request_schema={"type": "object", "required": ["entry_uuids"], "properties": {
                   "entry_uuids": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_IMPORT}}},
               responses={200: json_response("Documents (contenu en base64) ou erreur par document"), **COMMON})
    table.post("/v1/dmp/{ins}/documents/{entry_uuid}/visibility", visibility, tag=tag,
               summary="TD3.3a/b : masquer aux professionnels, rendre invisible au patient ou à ses représentants",
               parameters=(OID_PARAM,),
               request_schema={"type": "object", "properties": {
                   "masked_to_ps": {"type": "boolean"}, "invisible_to_patient": {"type": "boolean"},
                   "invisible_to_legal_reps": {"type": "boolean"}}},
               responses={200: json_response("Nouvelle version des métadonnées (nouvel entryUUID)", ENTRY_SCHEMA),
                          404: problem_response("Document introuvable"), **COMMON})
    table.post("/v1/dmp/{ins}/authorization", authorization, tag=tag,
               summary="TD0.3 : demander l'autorisation d'accès de ce professionnel au DMP du patient (après son "
                       "consentement, sur demande explicite)",
               parameters=(OID_PARAM,),
               request_schema={"type": "object", "required": ["confirm"], "properties": {
                   "confirm": {"const": True, "description": "la demande explicite du professionnel"}}},
               responses={200: json_response("État du DMP après l'autorisation (TD0.2)"),
                          404: problem_response("Pas de DMP"), 409: problem_response("DMP fermé"), **COMMON})
    archived_schema = {"type": "object", "properties": {"entry_uuid": {"type": "string"},
                                                        "status": {"enum": ["archived", "approved"]}}}
    table.post("/v1/dmp/{ins}/documents/{entry_uuid}/archive", archive, tag=tag, body="none",
               summary="TD3.3d : archiver un document du DMP (médecin ou auteur du document)",
               description="entry_uuid: the document's entryUUID (urn:uuid:...) or its uniqueId. The document is "
                           "looked up by GetDocuments in ObjectRef mode just before the ITI-57 status change "
                           "Approved -> urn:asip:ci-sis:2010:StatusType:Archived; no search after. An archived "
                           "document is listed by GET .../documents with status=archived only.",
               parameters=(OID_PARAM,),
               responses={200: json_response("Document archivé", archived_schema),
                          404: problem_response("Document introuvable"), **COMMON})
    table.post("/v1/dmp/{ins}/documents/{entry_uuid}/unarchive", unarchive, tag=tag, body="none",
               summary="TD3.3d : désarchiver un document du DMP (retour au statut Approved)",
               description="entry_uuid: the document's entryUUID or its uniqueId; ObjectRef look-up, then the "
                           "ITI-57 status change Archived -> Approved.",
               parameters=(OID_PARAM,),
               responses={200: json_response("Document désarchivé", archived_schema),
                          404: problem_response("Document introuvable"), **COMMON})
    table.delete("/v1/dmp/{ins}/documents/{entry_uuid}", delete, tag=tag,
                 summary="TD3.3c : supprimer un document du DMP (son auteur seulement)",
                 parameters=(OID_PARAM,),
                 responses={200: json_response("Document supprimé"), 404: problem_response("Document introuvable"),
                            **COMMON})
