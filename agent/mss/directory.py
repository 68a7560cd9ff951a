"""Correspondents' MSSanté addresses from the Annuaire santé (FHIR API of the ANS): search by name.

``parse_bundle`` is pure (FHIR JSON in, entries out); ``DirectoryClient`` is the aiohttp adapter. The answer keeps
only what the doctor needs to choose a recipient: name, RPPS, profession, MSSanté addresses.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.errors import InvalidInput, Unavailable

RPPS_SYSTEMS = ("urn:oid:1.2.250.1.71.4.2.1", "http://rpps.fr")
# Annuaire santé FHIR IG: an MSSanté mailbox is a ContactPoint (profile as-mailbox-mss) whose e-mail type
# extension carries TRE_R256-TypeMessagerie "MSSANTE", with optional as-ext-mailbox-mss-metadata (type of BAL).
EMAIL_TYPE_MSSANTE = "MSSANTE"
MAILBOX_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
MAX_RESULTS = 20


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    name: str
    family_name: str
    given_name: str
    rpps: str
    profession: str
    addresses: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family_name": self.family_name, "given_name": self.given_name,
                "rpps": self.rpps, "profession": self.profession, "mss_addresses": list(self.addresses)}


def _is_mss(telecom: dict[str, Any]) -> bool:
    value = str(telecom.get("value", ""))
    if telecom.get("system") != "email" or "@" not in value:
        return False
    for ext in telecom.get("extension", []) or []:
        if not isinstance(ext, dict):
            continue
        coding = ext.get("valueCoding") or {}
        if isinstance(coding, dict) and coding.get("code") == EMAIL_TYPE_MSSANTE:
            return True
        if ext.get("url") == MAILBOX_METADATA:
            return True
    return value.lower().endswith(".mssante.fr")


def parse_bundle(bundle: Any) -> list[DirectoryEntry]:
    """Practitioners (and their roles' telecoms) of a FHIR searchset Bundle, those with an MSSanté address."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    people: dict[str, dict[str, Any]] = {}
    roles: list[dict[str, Any]] = []
    for entry in bundle.get("entry", []) or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Practitioner":
            people[str(resource.get("id", ""))] = resource
        elif resource.get("resourceType") == "PractitionerRole":
            roles.append(resource)
    out: list[DirectoryEntry] = []
    for pid, person in people.items():
        telecoms = list(person.get("telecom", []) or [])
        profession = ""
        for role in roles:
            ref = str((role.get("practitioner") or {}).get("reference", ""))
            if ref.endswith(f"Practitioner/{pid}") or ref == pid:
                telecoms.extend(role.get("telecom", []) or [])
                for code in role.get("code", []) or []:
                    for coding in code.get("coding", []) or []:
                        profession = profession or str(coding.get("display", ""))
        addresses = tuple(dict.fromkeys(str(t["value"]).strip() for t in telecoms if isinstance(t, dict)
                                        and _is_mss(t)))
        if not addresses:
            continue
        names = person.get("name", []) or [{}]
        first = names[0] if isinstance(names[0], dict) else {}
        family = str(first.get("family", ""))
        given = " ".join(str(g) for g in first.get("given", []) or [])
        prefix = " ".join(str(p) for p in first.get("prefix", []) or [])
        rpps = ""
        for ident in person.get("identifier", []) or []:
            if isinstance(ident, dict) and (ident.get("system") in RPPS_SYSTEMS or
                                            str(ident.get("value", "")).startswith("8")):
                rpps = str(ident.get("value", ""))
                break
        out.append(DirectoryEntry(" ".join(p for p in (prefix, given, family) if p), family, given, rpps,
                                  profession, addresses))
    return out[:MAX_RESULTS]


def check_query(name: str) -> str:
    cleaned = " ".join(name.split())
    if len(cleaned) < 2 or len(cleaned) > 100:
        raise InvalidInput.field("name", "Indiquez au moins deux caractères du nom recherché (100 au plus).")
    return cleaned


class DirectoryClient:
    """Searches the Annuaire santé FHIR API (``Practitioner?name=`` with the roles' telecoms included)."""

    def __init__(self, base_url: str, *, api_key: str = "", ca_file: str = "", timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.ca_file = ca_file
        self.timeout = timeout

    async def search(self, name: str) -> list[DirectoryEntry]:
        query = check_query(name)
        context = ssl.create_default_context(cafile=self.ca_file or None)
        headers = {"Accept": "application/fhir+json"}
        if self.api_key:
            headers["ESANTE-API-KEY"] = self.api_key
        params = {"name": query, "_count": str(MAX_RESULTS), "_revinclude": "PractitionerRole:practitioner"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http, \
                    http.get(f"{self.base_url}/Practitioner", params=params, headers=headers, ssl=context) as resp:
                if resp.status >= 400:
                    raise Unavailable(f"L'Annuaire santé a répondu {resp.status}.", code="directory_unreachable")
                bundle = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable("Annuaire santé injoignable.", code="directory_unreachable") from exc
        try:
            return parse_bundle(bundle)
        except ValueError as exc:
            raise Unavailable("Réponse illisible de l'Annuaire santé.", code="directory_unreachable") from exc
