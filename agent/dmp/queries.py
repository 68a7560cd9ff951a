"""The bodies of the consultation and management transactions: ITI-18 (TD3.1), ITI-43 (TD3.2), ITI-57 metadata
and status updates (TD3.3a-d; the DMP deletes by a status change, it does not use ITI-62). Pure builders."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable

from lxml import etree

from agent.dmp.ebrim import (
    DE_CONFIDENTIALITY,
    HAS_MEMBER,
    LCM,
    MASKING_CODES,
    MASKING_SCHEME,
    QUERY,
    RIM,
    XDSB,
    Coded,
    SubmissionSetSpec,
    add_classification,
    add_slot,
    add_submission_set,
    classifications,
    rim,
)
from agent.dmp.models import STATUS_URNS, SearchCriteria, Visibility
from agent.errors import InvalidInput

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_SUBMISSION_SET_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
UPDATE_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"


def _quoted(values: Iterable[str]) -> str:
    out = []
    for v in values:
        if "'" in v:
            raise InvalidInput.field("criteria", "Apostrophe refusée dans un critère de recherche.")
        out.append(f"'{v}'")
    return "(" + ",".join(out) + ")"


def _xds_date(value: str, field: str) -> str:
    if not value:
        return ""
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).strftime("%Y%m%d")
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC)
        return stamp.strftime("%Y%m%d%H%M%S")
    except ValueError as exc:
        raise InvalidInput.field(field, "Date attendue au format AAAA-MM-JJ ou RFC 3339.") from exc


def adhoc_query(query_id: str, params: list[tuple[str, str]], return_type: str = "LeafClass") -> etree._Element:
    req = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(req, f"{{{QUERY}}}ResponseOption", returnComposedObjects="true", returnType=return_type)
    aq = etree.SubElement(req, rim("AdhocQuery"), id=query_id)
    for name, value in params:
        add_slot(aq, name, _values(value))
    return req


def _values(value: str, limit: int = 256) -> list[str]:
    """A list parameter longer than a rim:Value may hold (256) split over several Values, as ITI-18 allows."""
    if len(value) <= limit or not (value.startswith("(") and value.endswith(")")):
        return [value]
    out: list[str] = []
    current: list[str] = []
    for item in value[1:-1].split(","):
        if current and len(",".join([*current, item])) + 2 > limit:
            out.append("(" + ",".join(current) + ")")
            current = []
        current.append(item)
    out.append("(" + ",".join(current) + ")")
    return out


def find_documents(patient_cx: str, c: SearchCriteria) -> etree._Element:
    statuses = [STATUS_URNS.get(s, s) for s in (c.statuses or ("approved",))]
    params = [("$XDSDocumentEntryPatientId", f"'{patient_cx}'"), ("$XDSDocumentEntryStatus", _quoted(statuses))]
    for name, codes in (("$XDSDocumentEntryTypeCode", c.type_codes), ("$XDSDocumentEntryClassCode", c.class_codes),
                        ("$XDSDocumentEntryFormatCode", c.format_codes)):
        if codes:
            params.append((name, _quoted(codes)))
    for name, value, fld in (("$XDSDocumentEntryCreationTimeFrom", c.created_from, "from"),
                             ("$XDSDocumentEntryCreationTimeTo", c.created_to, "to"),
                             ("$XDSDocumentEntryServiceStartTimeFrom", c.service_from, "service_from"),
                             ("$XDSDocumentEntryServiceStopTimeTo", c.service_to, "service_to")):
        stamp = _xds_date(value, fld)
        if stamp:
            params.append((name, stamp))
    if c.author:
        params.append(("$XDSDocumentEntryAuthorPerson", _quoted([c.author])))
    if c.visibility and c.visibility != "normal":
        code = MASKING_CODES.get(c.visibility)
        if code is None:
            raise InvalidInput.field("visibility", "Visibilité inconnue.")
        params.append(("$XDSDocumentEntryConfidentialityCode", _quoted([f"{code}^^{MASKING_SCHEME}"])))
    return adhoc_query(FIND_DOCUMENTS, params)


def find_submission_sets(patient_cx: str, since: str) -> etree._Element:
    """FindSubmissionSets from a date ([CDT] 3.1-400, EX_3.1-1012/1013): the local time given with its offset is
    sent in UTC, as every XDS time is."""
    params = [("$XDSSubmissionSetPatientId", f"'{patient_cx}'"),
              ("$XDSSubmissionSetStatus", _quoted([STATUS_URNS["approved"]])),
              ("$XDSSubmissionSetSubmissionTimeFrom", _xds_date(since, "since"))]
    return adhoc_query(FIND_SUBMISSION_SETS, params)


def submission_set_and_contents(entry_uuid: str) -> etree._Element:
    return adhoc_query(GET_SUBMISSION_SET_AND_CONTENTS, [("$XDSSubmissionSetEntryUUID", _quoted([entry_uuid]))])


def get_documents(*, unique_ids: Iterable[str] = (), entry_uuids: Iterable[str] = (),
                  return_type: str = "LeafClass") -> etree._Element:
    """GetDocuments; ``ObjectRef`` for the look-up of entryUUIDs before a delete, archive or replacement
    ([CDT] RG_3130, EX_3.1-1090: LeafClass is refused to a professional without consultation rights)."""
    params = []
    if unique_ids:
        params.append(("$XDSDocumentEntryUniqueId", _quoted(unique_ids)))
    if entry_uuids:
        params.append(("$XDSDocumentEntryEntryUUID", _quoted(entry_uuids)))
    return adhoc_query(GET_DOCUMENTS, params, return_type)


def retrieve_request(repository_unique_id: str, unique_id: str) -> etree._Element:
    req = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    dr = etree.SubElement(req, f"{{{XDSB}}}DocumentRequest")
    etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = repository_unique_id
    etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = unique_id
    return req


def update_visibility(old: etree._Element, visibility: Visibility, new_uuid: str, ss: SubmissionSetSpec,
                      ids: Iterable[str]) -> etree._Element:
    """ITI-57 metadata update: a new version of ``old`` (same lid) whose masking codes are ``visibility``."""
    it = iter(ids)
    new = copy.deepcopy(old)
    old_id = old.get("id", "")
    new.set("id", new_uuid)
    new.set("lid", old.get("lid") or old_id)
    for attr in ("status", "home"):
        new.attrib.pop(attr, None)
    for vi in new.findall(rim("VersionInfo")):
        new.remove(vi)
    for el in list(new):  # fresh ids for the children, pointing at the new entry
        if el.tag in (rim("Classification"), rim("ExternalIdentifier")):
            el.set("id", next(it))
            el.set("classifiedObject" if el.tag == rim("Classification") else "registryObject", new_uuid)
    for cl in classifications(new, DE_CONFIDENTIALITY):
        if cl.get("nodeRepresentation") in MASKING_CODES.values():
            new.remove(cl)
    anchor = classifications(new, DE_CONFIDENTIALITY)
    position = new.index(anchor[-1]) + 1 if anchor else len(new)
    for flag, code in MASKING_CODES.items():
        if getattr(visibility, flag):
            holder = etree.Element("holder")
            add_classification(holder, DE_CONFIDENTIALITY, new_uuid, code, Coded(code, MASKING_SCHEME, code), next(it))
            new.insert(position, holder[0])
            position += 1
    req = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    rol = etree.SubElement(req, rim("RegistryObjectList"))
    rol.append(new)
    add_submission_set(rol, ss, it)
    assoc = etree.SubElement(rol, rim("Association"), id=next(it), associationType=HAS_MEMBER,
                             sourceObject=ss.entry_uuid, targetObject=new_uuid)
    add_slot(assoc, "SubmissionSetStatus", ["Original"])
    add_slot(assoc, "PreviousVersion", [_version_of(old)])
    return req


def _version_of(eo: etree._Element) -> str:
    vi = eo.find(rim("VersionInfo"))
    return vi.get("versionName", "1") if vi is not None else "1"


def update_status(entry_uuid: str, lid: str, original: str, new: str, ss: SubmissionSetSpec,
                  ids: Iterable[str]) -> etree._Element:
    """ITI-57 availability status change: TD3.3d archiving and un-archiving, TD3.3c deletion (new = deleted)."""
    it = iter(ids)
    req = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    rol = etree.SubElement(req, rim("RegistryObjectList"))
    add_submission_set(rol, ss, it)
    assoc = etree.SubElement(rol, rim("Association"), id=next(it), associationType=UPDATE_STATUS,
                             sourceObject=ss.entry_uuid, targetObject=entry_uuid)
    add_slot(assoc, "OriginalStatus", [STATUS_URNS.get(original, original)])
    add_slot(assoc, "NewStatus", [STATUS_URNS.get(new, new)])
    return req
