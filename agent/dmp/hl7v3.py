"""TD0.2 (test d'existence) and TD0.3 (authorisation) as the DMP speaks them: HL7v3 messages on ``.../patients``.

Pure builders and readers, no sockets; the simulator answers with the same module, so both sides share one
reading. What is public, and followed here:
- [CDT] 0.2-010: the answer's acknowledgement is ``AA`` and its query response code ``NF`` when the patient has no
  DMP (``OK`` otherwise); 0.3-010/080: the DMP confirms a TD0.3 with ``DMPOk``; EX_0.2-1020: the answer carries
  the patient's identity traits in a ``patientPerson`` block (Relais never reads them: only the INS is trusted).
- [DRIM] ``VerifyAuthorizationRequest``: ``PRPA_IN201307UV02`` (SOAP action ``urn:hl7-org:v3:PRPA_IN201307UV02``)
  with reasonCode ``TEST_EXST`` in 1.2.250.1.213.1.1.4.11, the receiver device 1.2.250.1.213.4.1.1.1 "DMP", and
  ``parameterList/patientIdentifier/value`` whose root is the INS OID.
What is NOT public (the GIE guide SEL-MP-037 and its message tables): how the answer encodes the DMP's status
(closed, closing date and reason), the professional's authorisation (valid, expired, forbidden, none), the treating
physician flag; and the TD0.3 interaction. Relais reads them as HL7v3 would carry them (registrationEvent status
and effectiveTime, ``administrativeObservation`` items coded in ``DMP_OBSERVATIONS``), tolerates values it does
not know (EX_0.2-1020), and takes the TD0.3 interaction from configuration (``[dmp] td03_interaction``).
Never parses the answer's identity traits; never logs the INS.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from agent.dmp.models import PatientDmpStatus
from agent.errors import PermanentRemoteError, TransientRemoteError

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
INTERACTION_ROOT = "2.16.840.1.113883.1.6"
TD02_INTERACTION = "PRPA_IN201307UV02"
TD02_ANSWER = "PRPA_IN201306UV02"
TD02_ACTION = f"urn:hl7-org:v3:{TD02_INTERACTION}"
# No public source for TD0.3's interaction: the default is configuration ([dmp] td03_interaction).
TD03_INTERACTION = "PRPA_IN201314UV02"
ACK_INTERACTION = "MCCI_IN000002UV01"
REASON_SCHEME = "1.2.250.1.213.1.1.4.11"  # the DMP's reason codes ([DRIM] TEST_EXST)
DMP_DEVICE = "1.2.250.1.213.4.1.1.1"
TEST_EXISTENCE = "TEST_EXST"
TD03_ADD, TD03_REMOVE = "AJOUT", "SUPPRESSION"  # [CDT] EX_0.3-1010 speaks of "TD0.3 AJOUT"
DMP_OK = "DMPOk"
# administrativeObservation codes of the TD0.2 answer (not public: a Relais reading shared with the simulator).
DMP_OBSERVATIONS = {"authorization": "AUTORISATION", "treating_physician": "MEDECIN_TRAITANT",
                    "closure_reason": "MOTIF_FERMETURE", "mes": "ESPACE_SANTE"}
# The professional's authorisation as the DMP states it -> Relais's words; unknown values are kept as they come.
AUTHORIZATIONS = {"VALIDE": "valid", "EXPIREE": "expired", "INTERDITE": "forbidden", "NON_EXISTE": "none"}


def h(tag: str) -> str:
    return f"{{{HL7}}}{tag}"


@dataclass(frozen=True, slots=True)
class MessageIds:
    """Who sends, and the ids of one message (fresh per call)."""

    sender_root: str  # the LPS instance OID
    sender_name: str
    message_id: str
    query_id: str
    now: dt.datetime


def _header(root: etree._Element, interaction: str, ids: MessageIds, *, ack: str = "AL") -> None:
    etree.SubElement(root, h("id"), root=ids.sender_root, extension=ids.message_id)
    etree.SubElement(root, h("creationTime"), value=ids.now.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S"))
    etree.SubElement(root, h("interactionId"), root=INTERACTION_ROOT, extension=interaction)
    etree.SubElement(root, h("processingCode"), code="P")
    etree.SubElement(root, h("processingModeCode"), code="T")
    etree.SubElement(root, h("acceptAckCode"), code=ack)
    for role, type_code, device_id, name in (("receiver", "RCV", DMP_DEVICE, "DMP"),
                                             ("sender", "SND", ids.sender_root, ids.sender_name)):
        el = etree.SubElement(root, h(role), typeCode=type_code)
        device = etree.SubElement(el, h("device"), classCode="DEV", determinerCode="INSTANCE")
        etree.SubElement(device, h("id"), root=device_id)
        etree.SubElement(device, h("softwareName")).text = name


def _message(interaction: str) -> etree._Element:
    return etree.Element(h(interaction), nsmap={None: HL7, "xsi": XSI}, ITSVersion="XML_1.0")


def td02_request(ins: str, oid: str, ids: MessageIds) -> etree._Element:
    """PRPA_IN201307UV02: does this INS have a DMP, and may the VIHF's professional use it."""
    msg = _message(TD02_INTERACTION)
    _header(msg, TD02_INTERACTION, ids)
    cap = etree.SubElement(msg, h("controlActProcess"), classCode="CACT", moodCode="EVN")
    etree.SubElement(cap, h("reasonCode"), code=TEST_EXISTENCE, codeSystem=REASON_SCHEME,
                     displayName="Test d'existence de dossier")
    query = etree.SubElement(cap, h("queryByParameter"))
    etree.SubElement(query, h("queryId"), root=ids.sender_root, extension=ids.query_id)
    etree.SubElement(query, h("statusCode"), code="new")
    params = etree.SubElement(query, h("parameterList"))
    pid = etree.SubElement(params, h("patientIdentifier"))
    etree.SubElement(pid, h("value"), root=oid, extension=ins)
    etree.SubElement(pid, h("semanticsText")).text = "Patient.id"
    return msg


def td03_request(ins: str, oid: str, action: str, ids: MessageIds, interaction: str = TD03_INTERACTION
                 ) -> etree._Element:
    """TD0.3: add (AJOUT) or remove (SUPPRESSION) the VIHF's professional's authorisation on this DMP."""
    msg = _message(interaction)
    _header(msg, interaction, ids)
    cap = etree.SubElement(msg, h("controlActProcess"), classCode="CACT", moodCode="EVN")
    etree.SubElement(cap, h("reasonCode"), code=action, codeSystem=REASON_SCHEME)
    subject = etree.SubElement(cap, h("subject"), typeCode="SUBJ")
    event = etree.SubElement(subject, h("registrationEvent"), classCode="REG", moodCode="EVN")
    patient = etree.SubElement(etree.SubElement(event, h("subject1"), typeCode="SBJ"), h("patient"),
                               classCode="PAT")
    etree.SubElement(patient, h("id"), root=oid, extension=ins)
    return msg


def request_patient(msg: etree._Element) -> tuple[str, str]:
    """(INS, OID) a TD0.2 or TD0.3 request is about (the simulator's reading)."""
    for path in ("controlActProcess/queryByParameter/parameterList/patientIdentifier/value",
                 "controlActProcess/subject/registrationEvent/subject1/patient/id"):
        el = msg.find("/".join(h(p) for p in path.split("/")))
        if el is not None:
            return el.get("extension", ""), el.get("root", "")
    return "", ""


def interaction_of(msg: etree._Element) -> str:
    el = msg.find(h("interactionId"))
    return el.get("extension", "") if el is not None else ""


def reason_of(msg: etree._Element) -> str:
    el = msg.find(f"{h('controlActProcess')}/{h('reasonCode')}")
    return el.get("code", "") if el is not None else ""


# --- answers (the simulator builds them, the client reads them) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class DmpState:
    """What the DMP knows of one patient and one professional, as TD0.2 tells it."""

    exists: bool
    closed_on: str = ""  # YYYYMMDD when closed
    closure_reason: str = ""
    authorization: str = "NON_EXISTE"  # VALIDE, EXPIREE, INTERDITE, NON_EXISTE (or what the DMP invents next)
    treating_physician: bool = False
    mes: bool = True


def _ack(msg: etree._Element, request: etree._Element, code: str, detail: str = "", text: str = "") -> None:
    ack = etree.SubElement(msg, h("acknowledgement"))
    etree.SubElement(ack, h("typeCode"), code=code)
    target = etree.SubElement(ack, h("targetMessage"))
    req_id = request.find(h("id"))
    etree.SubElement(target, h("id"), root=req_id.get("root", "") if req_id is not None else "",
                     extension=req_id.get("extension", "") if req_id is not None else "")
    if detail:
        d = etree.SubElement(ack, h("acknowledgementDetail"), typeCode="I" if code == "AA" else "E")
        etree.SubElement(d, h("code"), code=detail)
        if text:
            etree.SubElement(d, h("text")).text = text


def _observation(parent: etree._Element, key: str, value: str, kind: str = "CV") -> None:
    obs = etree.SubElement(etree.SubElement(parent, h("subjectOf1")), h("administrativeObservation"),
                           classCode="VERIF", moodCode="EVN")
    etree.SubElement(obs, h("code"), code=DMP_OBSERVATIONS[key])
    v = etree.SubElement(obs, h("value"))
    v.set(f"{{{XSI}}}type", kind)
    v.set("code" if kind == "CV" else "value", value)


def td02_answer(request: etree._Element, ins: str, oid: str, state: DmpState, ids: MessageIds,
                traits: tuple[str, str] = ("", "")) -> etree._Element:
    """PRPA_IN201306UV02: AA, then NF (no DMP) or OK with the DMP's status and this professional's authorisation."""
    msg = _message(TD02_ANSWER)
    _header(msg, TD02_ANSWER, ids, ack="NE")
    _ack(msg, request, "AA")
    cap = etree.SubElement(msg, h("controlActProcess"), classCode="CACT", moodCode="EVN")
    if state.exists:
        event = etree.SubElement(etree.SubElement(cap, h("subject"), typeCode="SUBJ"), h("registrationEvent"),
                                 classCode="REG", moodCode="EVN")
        etree.SubElement(event, h("statusCode"), code="completed" if state.closed_on else "active")
        if state.closed_on:
            etree.SubElement(etree.SubElement(event, h("effectiveTime")), h("high"), value=state.closed_on)
        patient = etree.SubElement(etree.SubElement(event, h("subject1"), typeCode="SBJ"), h("patient"),
                                   classCode="PAT")
        etree.SubElement(patient, h("id"), root=oid, extension=ins)
        etree.SubElement(patient, h("statusCode"), code="terminated" if state.closed_on else "active")
        person = etree.SubElement(patient, h("patientPerson"), classCode="PSN", determinerCode="INSTANCE")
        name = etree.SubElement(person, h("name"))
        etree.SubElement(name, h("family")).text = traits[0]
        etree.SubElement(name, h("given")).text = traits[1]
        _observation(patient, "authorization", state.authorization)
        _observation(patient, "treating_physician", "true" if state.treating_physician else "false", "BL")
        _observation(patient, "mes", "true" if state.mes else "false", "BL")
        if state.closure_reason:
            _observation(patient, "closure_reason", state.closure_reason, "ST")
    qa = etree.SubElement(cap, h("queryAck"))
    qid = request.find(f"{h('controlActProcess')}/{h('queryByParameter')}/{h('queryId')}")
    etree.SubElement(qa, h("queryId"), root=qid.get("root", "") if qid is not None else "",
                     extension=qid.get("extension", "") if qid is not None else "")
    etree.SubElement(qa, h("queryResponseCode"), code="OK" if state.exists else "NF")
    return msg


def ack_answer(request: etree._Element, ids: MessageIds, ok: bool, detail: str) -> etree._Element:
    """MCCI_IN000002UV01: the DMP's acknowledgement of a TD0.3 (AA with DMPOk, or AE with its error code)."""
    msg = _message(ACK_INTERACTION)
    _header(msg, ACK_INTERACTION, ids, ack="NE")
    _ack(msg, request, "AA" if ok else "AE", detail)
    return msg


def refusal_answer(request: etree._Element, ids: MessageIds, answer_interaction: str, code: str,
                   text: str) -> etree._Element:
    """The DMP refusing a TD0.2 or TD0.3 with its own code and text (acknowledgement AE): the simulator's."""
    msg = _message(answer_interaction)
    _header(msg, answer_interaction, ids, ack="NE")
    _ack(msg, request, "AE", code, text)
    return msg


def _code(el: etree._Element | None, attr: str = "code") -> str:
    return el.get(attr, "") if el is not None else ""


def _refusal(msg: etree._Element, what: str) -> PermanentRemoteError:
    ack = msg.find(h("acknowledgement"))
    code = _code(ack.find(f"{h('acknowledgementDetail')}/{h('code')}") if ack is not None else None)
    text = (ack.findtext(f"{h('acknowledgementDetail')}/{h('text')}") or "").strip() if ack is not None else ""
    type_code = _code(ack.find(h("typeCode")) if ack is not None else None)
    said = " ".join(part for part in (code or type_code, text) if part)
    return PermanentRemoteError(f"Le DMP a refusé {what} : {said or 'sans motif'}.", service="dmp",
                                code="dmp_refused", dmp_code=code or type_code, dmp_text=text)


def read_td02_answer(msg: etree._Element) -> PatientDmpStatus:
    """The patient's DMP status from a PRPA_IN201306UV02; a refusal (AE, AR) becomes PermanentRemoteError."""
    if etree.QName(msg).localname != TD02_ANSWER:
        raise TransientRemoteError("Réponse TD0.2 inattendue du DMP.", service="dmp", code="dmp_answer_invalid")
    ack = _code(msg.find(f"{h('acknowledgement')}/{h('typeCode')}"))
    if ack != "AA":
        raise _refusal(msg, "le test d'existence")
    cap = msg.find(h("controlActProcess"))
    response = _code(cap.find(f"{h('queryAck')}/{h('queryResponseCode')}") if cap is not None else None)
    if response == "NF" or cap is None:
        return PatientDmpStatus(exists=False, ack_code=ack, query_response=response)
    event = cap.find(f"{h('subject')}/{h('registrationEvent')}")
    patient = event.find(f"{h('subject1')}/{h('patient')}") if event is not None else None
    observations: dict[str, str] = {}
    if patient is not None:
        for obs in patient.iterfind(f"{h('subjectOf1')}/{h('administrativeObservation')}"):
            value = obs.find(h("value"))
            observations[_code(obs.find(h("code")))] = (_code(value) or _code(value, "value")) if value is not None \
                else ""
    status = _code(event.find(h("statusCode"))) if event is not None else ""
    closed_on = _code(event.find(f"{h('effectiveTime')}/{h('high')}"), "value") if event is not None else ""
    raw_auth = observations.get(DMP_OBSERVATIONS["authorization"], "")
    authorization = AUTHORIZATIONS.get(raw_auth, raw_auth.lower())
    closed = status not in ("active", "")
    return PatientDmpStatus(
        exists=True, active=not closed, authorized=authorization == "valid" and not closed,
        blocked=authorization == "forbidden",
        attached_to_mes=observations.get(DMP_OBSERVATIONS["mes"], "") == "true",
        closed_reason=observations.get(DMP_OBSERVATIONS["closure_reason"], ""),
        treating_physician=observations.get(DMP_OBSERVATIONS["treating_physician"], "") == "true",
        authorization=authorization, closed_on=_iso_date(closed_on), ack_code=ack, query_response=response)


def read_ack(msg: etree._Element, what: str) -> str:
    """The DMP's acknowledgement detail (DMPOk) of a TD0.3; a refusal becomes PermanentRemoteError."""
    if _code(msg.find(f"{h('acknowledgement')}/{h('typeCode')}")) != "AA":
        raise _refusal(msg, what)
    return _code(msg.find(f"{h('acknowledgement')}/{h('acknowledgementDetail')}/{h('code')}"))


def _iso_date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) >= 8 and value[:8].isdigit() else value
