"""LGC.CSE.12: prefill a certificat de santé from what earlier documents already say.

Given the child's earlier CDA documents (a previous certificate, notes de vaccination, mesures de l'enfant, a
synthèse...), ``prefill_cse`` returns the ``data`` of ``POST /v1/cda`` for a CS9 or CS24 with what can be carried
over: the parents (identity, birth date, profession, activity), the household and childcare answers, feeding
durations, every vaccination with its ATC class, date and rank, and the latest measures. The doctor checks and
completes it; nothing here is sent anywhere.

Pure: reads the documents with the hardened parser, never logs their content.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from agent.cda.valuesets import TERMINOLOGIES
from agent.errors import InvalidInput
from agent.xml import safe

H = "{urn:hl7-org:v3}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ATC = TERMINOLOGIES["ATC"].oid
IMMUNIZATION = "1.3.6.1.4.1.19376.1.5.3.1.4.12"
SOCIAL = "1.3.6.1.4.1.19376.1.5.3.1.4.13.4"
MEASURE_CODES = {"29463-7": "weight_g", "8302-2": "height_cm", "8287-5": "head_cm"}


def _templates(node: etree._Element) -> set[str]:
    return {t.get("root", "") for t in node.findall(f"{H}templateId")}


def _date(value: str | None) -> str | None:
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}"


def _value(observation: etree._Element) -> Any:
    value = observation.find(f"{H}value")
    if value is None:
        return None
    kind = value.get(XSI_TYPE, "")
    if kind == "BL":
        return value.get("value") == "true"
    if kind == "INT":
        return int(value.get("value", "0"))
    if kind == "PQ":
        number = float(value.get("value", "0"))
        return int(number) if number.is_integer() else number
    if value.get("code"):
        return {"code": value.get("code"), "display": value.get("displayName", "")}
    return None


def prefill_cse(kind: str, documents: list[bytes]) -> dict[str, Any]:
    if kind not in ("cse_cs9", "cse_cs24"):
        raise InvalidInput.field("kind", "Préremplissage possible pour cse_cs9 et cse_cs24.")
    data: dict[str, Any] = {}
    parents: dict[str, dict[str, Any]] = {}
    vaccinations: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
    latest_measures: tuple[str, dict[str, Any]] | None = None
    for cda in documents:
        root = safe.parse(cda, what="CDA")
        for observation in root.iter(f"{H}observation"):
            if SOCIAL in _templates(observation):
                _social(observation, data, parents)
        for administration in root.iter(f"{H}substanceAdministration"):
            if IMMUNIZATION in _templates(administration) and administration.get("negationInd") != "true":
                vaccine = _vaccination(administration)
                if vaccine:
                    vaccinations[(vaccine["atc"], vaccine.get("date"), vaccine.get("rank"))] = vaccine
        for organizer in root.iter(f"{H}organizer"):
            when = organizer.find(f"{H}effectiveTime")
            stamp = when.get("value", "") if when is not None else ""
            measures = {MEASURE_CODES[c.get("code", "")]: _value(o)
                        for o in organizer.iter(f"{H}observation")
                        if (c := o.find(f"{H}code")) is not None and c.get("code") in MEASURE_CODES}
            if measures and (latest_measures is None or stamp > latest_measures[0]):
                latest_measures = (stamp, {k: v for k, v in measures.items() if v is not None})
    if parents:
        data["parents"] = list(parents.values())
    if vaccinations:
        data["vaccinations"] = sorted(vaccinations.values(), key=lambda v: (v.get("date") or "", v["atc"]))
    if latest_measures is not None:
        data["measures"] = latest_measures[1]
    return data


def _social(observation: etree._Element, data: dict[str, Any], parents: dict[str, dict[str, Any]]) -> None:
    qualifier = observation.find(f"{H}code/{H}qualifier/{H}value")
    key = qualifier.get("code", "") if qualifier is not None else ""
    value = _value(observation)
    related = observation.find(f"{H}subject/{H}relatedSubject")
    if related is not None:
        relation_code = related.find(f"{H}code")
        relation = relation_code.get("code", "") if relation_code is not None else ""
        parent = parents.setdefault(relation or f"parent-{len(parents)}", {"relation": relation})
        person = related.find(f"{H}subject")
        if person is not None:
            birth = person.find(f"{H}birthTime")
            if birth is not None and _date(birth.get("value")):
                parent["birth_date"] = _date(birth.get("value"))
            for part, name in (("family", "family"), ("given", "given")):
                node = person.find(f"{H}name/{H}{part}")
                if node is not None and node.text:
                    parent[name] = node.text.strip()
        if key == "ORG-099" and isinstance(value, dict):
            parent["profession"] = value
        elif key == "ORG-075" and isinstance(value, dict):
            parent["activity"] = value
        return
    simple = {"85722-7": "children_at_home", "PAT-058": "childcare", "PAT-048": "childcare_type",
              "PAT-059": "breastfeeding_exclusive_weeks", "PAT-060": "breastfeeding_mixed_weeks"}
    if key in simple and value is not None:
        data[simple[key]] = value


def _vaccination(administration: etree._Element) -> dict[str, Any] | None:
    translation = next((t for t in administration.iter(f"{H}translation") if t.get("codeSystem") == ATC), None)
    if translation is None:
        return None
    vaccine: dict[str, Any] = {"atc": translation.get("code", ""),
                               "display": translation.get("displayName") or translation.get("code", "")}
    when = administration.find(f"{H}effectiveTime")
    date = _date(when.get("value") if when is not None else None)
    if date:
        vaccine["date"] = date
    for observation in administration.iter(f"{H}observation"):
        code = observation.find(f"{H}code")
        if code is not None and code.get("code") == "30973-2":
            rank = _value(observation)
            if isinstance(rank, int):
                vaccine["rank"] = rank
    lot = administration.find(f".//{H}lotNumberText")
    if lot is not None and lot.text:
        vaccine["lot"] = lot.text.strip()
    return vaccine
