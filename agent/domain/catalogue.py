"""The Ségur document catalogue (vague 2, médecine de ville): what each document is and where it goes by default.

For each document of the seed's lists (REQUIREMENTS.md): the XDS type code (JDV_J07), the class code (JDV_J06,
TRE_A03), N1 (PDF wrapped in CDA) or N3 (structured), the format code (JDV_J10), and per profession whether it goes
to the DMP automatically (A) and by MSSanté to the médecin traitant / adresseur (M). The queue reads
``default_destinations`` when an order does not say; the MSSanté part reads ``mss_to_correspondent``.

Pure data and rules, stdlib only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

LOINC = "2.16.840.1.113883.6.1"
OID_TYPE_CODES_ANS = "1.2.250.1.213.1.1.4.12"  # the ANS's own type codes (CERT_DECL, PRESC-*)
OID_CLASS_CODES = "1.2.250.1.213.1.1.4.1"  # TRE_A03 ClasseDocument
OID_FORMAT_CODES_ANS = "1.2.250.1.213.1.1.4.2.282"  # TRE_A06 formats ANS (urn:asip:..., urn:ans:...)
OID_FORMAT_CODES_IHE = "1.3.6.1.4.1.19376.1.2.3"  # IHE format codes (urn:ihe:...)

FORMAT_N1_PDF = "urn:ihe:iti:xds-sd:pdf:2008"
# The CSE platform's mailbox by default; the agent takes it from `[mss] cse_address` (no public source names it).
CSE_MSS_ADDRESS = "certificatsdesante@plateformecse.mssante.fr"


class Level(enum.StrEnum):
    N1 = "N1"  # a PDF in a CDA R2 nonXMLBody (XDS-SD)
    N3 = "N3"  # a structured CDA R2 body with coded entries


class Profession(enum.StrEnum):
    MEDECIN = "medecin"
    SAGE_FEMME = "sage_femme"
    PARAMEDICAL = "paramedical"  # IDE/IPA, orthophonistes, orthoptistes, podologues, kinésithérapeutes
    PHARMACIEN = "pharmacien"


CLASS_DISPLAY = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "45": "Traitement administré",
    "44": "Plan de soins, protocole de soins",
    "52": "Certificat, déclaration",
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where one profession sends a document by default."""

    dmp: bool  # A: to the DMP automatically
    mss: bool  # M: by MSSanté to the médecin traitant / adresseur


@dataclass(frozen=True, slots=True)
class DocumentType:
    key: str
    title: str
    type_code: str
    type_system: str
    class_code: str
    level: Level
    format_code: str
    routes: dict[Profession, Route]
    kind: str = "n1"  # builder kind for POST /v1/cda (n1 for every PDF document)

    @property
    def class_display(self) -> str:
        return CLASS_DISPLAY[self.class_code]

    @property
    def format_system(self) -> str:
        return OID_FORMAT_CODES_IHE if self.format_code.startswith("urn:ihe:") else OID_FORMAT_CODES_ANS


_M, _S, _P, _F = Profession.MEDECIN, Profession.SAGE_FEMME, Profession.PARAMEDICAL, Profession.PHARMACIEN
AM = Route(dmp=True, mss=True)
A = Route(dmp=True, mss=False)
M = Route(dmp=False, mss=True)
NONE = Route(dmp=False, mss=False)


def _doc(key: str, title: str, code: str, class_code: str, routes: dict[Profession, Route], *,
         level: Level = Level.N1, fmt: str = FORMAT_N1_PDF, kind: str = "n1", system: str = LOINC) -> DocumentType:
    return DocumentType(key, title, code, system, class_code, level, fmt, routes, kind)


CATALOGUE: tuple[DocumentType, ...] = (
    _doc("synthese_medicale", "Synthèse médicale", "60591-5", "11", {_M: AM},
         level=Level.N3, fmt="urn:ihe:pcc:ips:2020", kind="synthese_medicale"),
    _doc("cr_imagerie", "CR d'imagerie médicale", "18748-4", "10", {_M: AM, _S: AM}),
    _doc("prescription_produits", "Prescription de produits de santé", "57833-6", "42", {_M: AM, _S: A, _P: A}),
    _doc("prescription_biologie", "Prescription d'actes de biologie médicale", "PRESC-BIO", "42",
         {_M: AM, _S: A, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("prescription_kine", "Prescription d'actes de kinésithérapie", "PRESC-KINE", "42",
         {_M: AM, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("prescription_infirmiers", "Prescription d'actes infirmiers", "PRESC-INF", "42",
         {_M: AM, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("prescription_pedicurie", "Prescription d'actes de pédicurie", "PRESC-PEDI", "42",
         {_M: AM, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("prescription_orthophonie", "Prescription d'actes d'orthophonie", "PRESC-ORTHOPHO", "42",
         {_M: AM, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("prescription_orthoptie", "Prescription d'actes d'orthoptie", "PRESC-ORTHOPTIE", "42",
         {_M: AM, _P: A}, system=OID_TYPE_CODES_ANS),
    _doc("cr_consultation", "CR ou fiche de consultation ou de visite", "11488-4", "10", {_M: AM, _S: AM}),
    _doc("mesures_enfant", "Mesures de l'enfant", "29274-8", "10", {_M: A},
         level=Level.N3, fmt="urn:ans:ci-sis:cse-mde:2023", kind="mesures_enfant"),
    _doc("cr_examen_enfant", "CR d'examen de l'enfant", "59283-2", "10", {_M: AM}),
    # CS8 is not in the médecins' automatic list; CS9 and CS24 go to the CSE platform by MSSanté (LGC.CSE.15).
    _doc("cse_cs8", "Certificat de santé du 8ème jour", "CERT_DECL", "52", {_M: NONE},
         level=Level.N3, fmt="urn:asip:ci-sis:cse-cs8:2017", kind="cse_cs8", system=OID_TYPE_CODES_ANS),
    _doc("cse_cs9", "Certificat de santé du 9ème mois", "CERT_DECL", "52", {_M: NONE},
         level=Level.N3, fmt="urn:asip:ci-sis:cse-cs9:2017", kind="cse_cs9", system=OID_TYPE_CODES_ANS),
    _doc("cse_cs24", "Certificat de santé du 24ème mois", "CERT_DECL", "52", {_M: NONE},
         level=Level.N3, fmt="urn:asip:ci-sis:cse-cs24:2017", kind="cse_cs24", system=OID_TYPE_CODES_ANS),
    _doc("lettre_adressage", "Lettre d'adressage", "96349-6", "10", {_M: M, _S: M}),
    _doc("note_vaccination", "Note de vaccination", "87273-9", "45", {_M: A, _S: A, _P: A, _F: AM},
         level=Level.N3, fmt="urn:asip:ci-sis:vac-note:2021", kind="vaccination_note"),
    _doc("demande_imagerie", "Demande d'actes d'imagerie", "55115-0", "42", {_M: A, _S: A}),
    _doc("certificat", "Certificat, déclaration", "CERT_DECL", "52", {_M: AM, _S: NONE, _P: NONE},
         system=OID_TYPE_CODES_ANS),
    _doc("projet_accueil", "Projet d'accueil individualisé", "80771-9", "44", {_M: AM}),
    _doc("cr_grossesse", "CR de grossesse", "89233-1", "10", {_M: AM, _S: AM}),
    _doc("plan_prevention", "Plan personnalisé de prévention", "83869-8", "44", {_M: AM, _S: AM, _P: AM, _F: AM}),
    _doc("bilan_bucco_dentaire", "Bilan bucco-dentaire", "28617-9", "10", {_M: AM}),
    _doc("bilan_professionnel", "Bilan par professionnel de santé", "34120-6", "10", {_M: AM, _S: AM, _P: AM}),
    _doc("carte_implant", "Carte d'implant", "101881-1", "10", {_M: AM, _S: AM}),
    # TROD is N3 in the seed, but the kit has no TROD model nor format code: wrapped as N1 until it does.
    _doc("trod", "Test rapide d'orientation diagnostique", "96173-0", "10", {_S: AM, _P: AM, _F: AM}),
    _doc("cr_administration", "CR d'administration de médicaments", "80565-5", "45", {_P: A}),
    _doc("cr_bilan_fonctionnel", "CR de bilan fonctionnel", "47420-5", "10", {_P: AM}),
    _doc("cr_entretien_pharma", "CR d'entretien pharmaceutique", "78601-2", "10", {_F: AM}),
    _doc("cr_consultation_pharma", "CR de consultation pharmaceutique", "93024-8", "10", {_F: AM}),
    _doc("bilan_medicamenteux", "Bilan médicamenteux", "56445-0", "10", {_F: AM}),
    _doc("renouvellement_ordonnance", "Renouvellement d'ordonnance", "75468-9", "42", {_F: AM}),
)

# The 8th-day, 9th-month and 24th-month child examinations whose CR makes the matching certificate due.
CSE_EXAMS = {"cse_cs8": "8e jour", "cse_cs9": "9e mois", "cse_cs24": "24e mois"}

_BY_KEY = {d.key: d for d in CATALOGUE}
_BY_KIND = {d.kind: d for d in CATALOGUE if d.kind != "n1"}


# Type codes Relais forwards (CDAs the LGC built) without producing them: their class codes, so that every type has
# its class from this module only. The ANS correspondence ASS_X04 (typeCode -> classCode) is not public; these
# pairs follow the JDV_J07/J57 displays (a CR is class 10, a synthesis 11, imaging 31).
FORWARDED_CLASSES = {"11490-0": "10", "11506-3": "10", "11505-5": "10", "11502-2": "10", "34133-9": "11"}
# A type the catalogue does not know goes out as a "Compte rendu": no public table says otherwise.
DEFAULT_CLASS = "10"


def class_code_of(type_code: str) -> str:
    """The one typeCode -> classCode table: the Ségur catalogue, then the forwarded types, then 10."""
    document = by_type_code(type_code)
    if document is not None:
        return document.class_code
    return FORWARDED_CLASSES.get(type_code, DEFAULT_CLASS)


def by_key(key: str) -> DocumentType | None:
    return _BY_KEY.get(key)


def by_kind(kind: str) -> DocumentType | None:
    """The structured (N3) document a builder kind produces."""
    return _BY_KIND.get(kind)


def by_type_code(type_code: str) -> DocumentType | None:
    """The first catalogue entry with this type code (CERT_DECL is shared: the generic certificate wins)."""
    matches = [d for d in CATALOGUE if d.type_code == type_code]
    generic = [d for d in matches if d.level is Level.N1]
    chosen = generic or matches
    return chosen[0] if chosen else None


def n1_type(type_code: str) -> DocumentType | None:
    """The N1 entry for a PDF with this type code, if the catalogue has one."""
    for d in CATALOGUE:
        if d.type_code == type_code and d.level is Level.N1:
            return d
    return None


def default_destinations(document: DocumentType, profession: Profession) -> Route:
    """A (DMP) and M (MSSanté to the médecin traitant / adresseur) for this profession; DMP by default when the
    seed lists the document for another profession only (feeding is opt-out, the LGC can still refuse)."""
    route = document.routes.get(profession)
    if route is not None:
        return route
    return Route(dmp=True, mss=False)


@dataclass(frozen=True, slots=True)
class CseNotice:
    """LGC.CSE.04: the certificate that becomes due when the matching examination's CR is filled."""

    kind: str  # cse_cs8, cse_cs9, cse_cs24: the POST /v1/cda kind that builds it
    exam: str  # "8e jour", "9e mois", "24e mois"
    title: str
    message: str  # French, for the tray / the LGC
    mss_recipient: str | None  # LGC.CSE.15: where it goes once validated (CS9, CS24)


# Age windows (days) in which the child's mandatory examination counts as the 8th-day, 9th-month, 24th-month one.
CSE_WINDOWS = (("cse_cs8", 0, 28), ("cse_cs9", 240, 330), ("cse_cs24", 670, 790))
CSE_EXAM_CODES = {"8j": "cse_cs8", "9m": "cse_cs9", "24m": "cse_cs24"}


def cse_due_for(type_code: str, birth: date, exam_day: date, exam: str | None = None, *,
                cse_address: str = CSE_MSS_ADDRESS) -> CseNotice | None:
    """The certificate due for an order of ``type_code`` about a child born on ``birth`` examined on ``exam_day``.

    Only the CR d'examen de l'enfant (59283-2) triggers one. ``exam`` ("8j", "9m", "24m") is what the LGC knows
    of the examination; without it, the child's age on the exam day decides (windows around day 8, month 9,
    month 24). None when no certificate is due.
    """
    if type_code != "59283-2":
        return None
    kind = CSE_EXAM_CODES.get(exam or "")
    if kind is None:
        age = (exam_day - birth).days
        kind = next((k for k, low, high in CSE_WINDOWS if low <= age <= high), None)
    if kind is None:
        return None
    doc = _BY_KIND[kind]
    recipient = cse_mss_recipient(kind, cse_address)
    message = f"Examen du {CSE_EXAMS[kind]} saisi : le {doc.title.lower()} est à remplir"
    message += (" ; une fois validé, il sera envoyé par MSSanté à la plateforme des certificats de santé."
                if recipient else ".")
    return CseNotice(kind, CSE_EXAMS[kind], doc.title, message, recipient)


def cse_mss_recipient(kind: str, address: str = CSE_MSS_ADDRESS) -> str | None:
    """LGC.CSE.15: a validated CS9 or CS24 goes to the CSE platform (``address``, configuration) by MSSanté;
    None for other kinds, or when no platform address is configured."""
    if kind not in ("cse_cs9", "cse_cs24"):
        return None
    return address.strip().lower() or None
