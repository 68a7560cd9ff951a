"""Fictitious test identities: the demo carte Vitale and the INSi simulator know the same people.

Everything here is invented for tests and the demo, except the ANS test INS 279035121518989
(PAT-TROIS Dominique) carried by the CI-SIS example documents. The set covers what an INSi integration
must handle: an INS found from the carte Vitale, a homonym pair that INSi answers "several" for unless
the birth place is given, a person INSi does not know, a birth in Corsica (2A), composed given names,
a name with an apostrophe, accents, and an INS history (a former NIA replaced by a NIR).

Dates are ISO (YYYY-MM-DD); birth places are INSEE codes of the commune at birth (99xxx: the country, abroad).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.domain.ins import OID_INS_NIA, OID_INS_NIR_TEST, compute_key


def _with_key(thirteen: str) -> str:
    return f"{thirteen}{compute_key(thirteen):02d}"


@dataclass(frozen=True, slots=True)
class FormerIns:
    value: str
    oid: str
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class TestIdentity:
    """One person as the INSi reference holds them (traits as the civil-status registry writes them)."""

    key: str  # a stable slug for tests: "pat-trois", "orsoni"...
    ins: str  # the active INS matricule, 15 characters
    oid: str
    birth_name: str  # upper case, no accents, as INSi returns it
    given_names: tuple[str, ...]  # birth given names, in order; INSi returns them space-separated
    sex: str  # "M" or "F"
    birth_date: str
    birth_place: str
    used_name: str = ""  # the name in use (e.g. a married name), shown on the carte Vitale
    history: tuple[FormerIns, ...] = ()
    in_insi: bool = True  # False: INSi answers "not found" (CR 01) for this person

    @property
    def family_name(self) -> str:
        return self.used_name or self.birth_name

    @property
    def first_given_name(self) -> str:
        return self.given_names[0]


PAT_TROIS = TestIdentity(
    key="pat-trois", ins="279035121518989", oid=OID_INS_NIR_TEST, birth_name="PAT-TROIS",
    given_names=("DOMINIQUE", "MARIE-LOUISE"), sex="F", birth_date="1979-03-28", birth_place="51215",
)
PAT_TROIS_CAMILLE = TestIdentity(
    key="pat-trois-camille", ins=_with_key("2120551454013"), oid=OID_INS_NIR_TEST, birth_name="PAT-TROIS",
    given_names=("CAMILLE", "ROSE"), sex="F", birth_date="2012-05-04", birth_place="51454",
)
# On the demo carte Vitale but not (yet) in the INS reference: INSi answers "not found".
PAT_TROIS_JULES = TestIdentity(
    key="pat-trois-jules", ins=_with_key("1240551454027"), oid=OID_INS_NIR_TEST, birth_name="PAT-TROIS",
    given_names=("JULES",), sex="M", birth_date="2024-05-17", birth_place="51454", in_insi=False,
)
ORSONI = TestIdentity(  # born in Ajaccio (2A004): the key uses 19 for 2A
    key="orsoni", ins=_with_key("162082A004123"), oid=OID_INS_NIR_TEST, birth_name="ORSONI",
    given_names=("JEAN-BAPTISTE", "ANGE"), sex="M", birth_date="1962-08-15", birth_place="2A004",
)
D_ARCY = TestIdentity(  # an apostrophe in the birth name, composed given names
    key="d-arcy", ins=_with_key("1901175114056"), oid=OID_INS_NIR_TEST, birth_name="D'ARCY",
    given_names=("JEAN-PHILIPPE", "LOUIS"), sex="M", birth_date="1990-11-02", birth_place="75114",
)
LEFEVRE = TestIdentity(  # typed "Lefèvre Hélène" by the secretary: found once normalised
    key="lefevre", ins=_with_key("2550113205078"), oid=OID_INS_NIR_TEST, birth_name="LEFEVRE",
    given_names=("HELENE", "MARIE", "THERESE"), sex="F", birth_date="1955-01-30", birth_place="13205",
    used_name="MOREAU",
)
# Homonyms: same birth name, first given name, sex and birth date; only the birth place tells them apart.
MARTIN_LYON = TestIdentity(
    key="martin-lyon", ins=_with_key("2850669383041"), oid=OID_INS_NIR_TEST, birth_name="MARTIN",
    given_names=("CLAIRE",), sex="F", birth_date="1985-06-12", birth_place="69383",
)
MARTIN_BORDEAUX = TestIdentity(
    key="martin-bordeaux", ins=_with_key("2850633063112"), oid=OID_INS_NIR_TEST, birth_name="MARTIN",
    given_names=("CLAIRE", "ANNE"), sex="F", birth_date="1985-06-12", birth_place="33063",
)
FONTAINE = TestIdentity(  # born in Italy (99127); first registered with a NIA, now a NIR
    key="fontaine", ins=_with_key("1750499127045"), oid=OID_INS_NIR_TEST, birth_name="FONTAINE",
    given_names=("THOMAS", "LUCA"), sex="M", birth_date="1975-04-18", birth_place="99127",
    history=(FormerIns(_with_key("7750499127003"), OID_INS_NIA, start="1999-09-01", end="2003-02-28"),),
)
# Known only by the NIA (no NIR yet): the INS kind is NIA.
NDIAYE = TestIdentity(
    key="ndiaye", ins=_with_key("8920199350021"), oid=OID_INS_NIA, birth_name="N'DIAYE",
    given_names=("AWA",), sex="F", birth_date="1992-01-01", birth_place="99350",
)

TEST_IDENTITIES: tuple[TestIdentity, ...] = (
    PAT_TROIS, PAT_TROIS_CAMILLE, PAT_TROIS_JULES, ORSONI, D_ARCY, LEFEVRE, MARTIN_LYON, MARTIN_BORDEAUX,
    FONTAINE, NDIAYE,
)


def identity(key: str) -> TestIdentity:
    for person in TEST_IDENTITIES:
        if person.key == key:
            return person
    raise KeyError(key)


@dataclass(frozen=True, slots=True)
class DemoBeneficiary:
    """One beneficiary of the demo carte Vitale, in the shape ``cards`` reports (``/v1/cards``)."""

    index: int
    person: TestIdentity
    quality: str  # agent.domain.vitale codes: "00" assuré, "02" conjoint, "06" enfant
    insured_nir: str  # the NIR of the insured person (ouvrant droit) the card belongs to
    rank: int = 1  # rang de naissance: tells twins on one card apart

    @property
    def nir(self) -> str:
        """The NIR the card carries: the ouvrant droit's, not the beneficiary's own (a child on a parent's card)."""
        return self.insured_nir

    @property
    def family_name(self) -> str:
        return self.person.family_name

    @property
    def given_names(self) -> list[str]:
        return list(self.person.given_names)

    @property
    def birth_name(self) -> str:
        return self.person.birth_name

    @property
    def birth_date(self) -> str:
        return self.person.birth_date

    @property
    def birth_rank(self) -> int:
        return self.rank


DEMO_VITALE: tuple[DemoBeneficiary, ...] = (
    DemoBeneficiary(0, PAT_TROIS, "00", PAT_TROIS.ins),
    DemoBeneficiary(1, PAT_TROIS_CAMILLE, "06", PAT_TROIS.ins),
    DemoBeneficiary(2, PAT_TROIS_JULES, "06", PAT_TROIS.ins),
)


@dataclass(frozen=True, slots=True)
class VirtualCard:
    """A carte Vitale the sandbox can insert, with the serial number its card block carries."""

    key: str
    serial: str
    beneficiaries: tuple[DemoBeneficiary, ...]
    validity_start: str = "2020-01-01"

    @property
    def insured_nir(self) -> str:
        return self.beneficiaries[0].insured_nir


# The demo card's serial number is invented (9 digits, as the CNDA's card INSi 01 has).
DEMO_CARD = VirtualCard("demo", "900000001", DEMO_VITALE)


def covered_by(insured_nir: str) -> list[TestIdentity]:
    """The people a carte Vitale of this insured person covers, as INSi's search by carte Vitale sees them."""
    return [b.person for b in DEMO_VITALE if b.insured_nir == insured_nir]
