"""The INSi search sequence: which traits to send first, and what to send again after "not found" or "several".

The INS référentiel (as e-santé Bretagne publishes it, "La gestion de l'INS") says: on CR 02 "plusieurs identités
trouvées", query again adding, in this order, the other given names of the identity document, then the birth place
(COG) if it was not used; on CR 01 "aucune identité trouvée" the criteria may be changed. The CNDA checks both
(INSi tests 1.07 / 2.07: after an injected CR 01, a second request with other criteria). The public INSi clients
send the first birth given name first, then each other given name alone, then all of them together; this plan does
the same, and adds the birth place only to tell homonyms apart (a wrong birth place turns a CR 00 into a CR 01).

Pure: ``RequeryPlan(traits)`` gives the first query, then the next one for each answer, and None when nothing
is left to try; every call costs the practice an INSi request, so the plan is bounded (``MAX_QUERIES``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.domain.traits import IdentityTraits

MAX_QUERIES = 6

FOUND, NOT_FOUND, SEVERAL = "found", "not_found", "several"


@dataclass(frozen=True, slots=True)
class TraitsQuery:
    """What one INSi request carries: ``given_names`` go space-separated in ``Prenom``."""

    given_names: tuple[str, ...]
    birth_place: str | None
    reason: str  # why this query, in French, for the answer's ``attempts``

    def traits(self, typed: IdentityTraits) -> IdentityTraits:
        return IdentityTraits(typed.birth_name, self.given_names, typed.sex, typed.birth_date, self.birth_place)

    def as_dict(self) -> dict[str, object]:
        return {"given_names": list(self.given_names), "birth_place": self.birth_place, "reason": self.reason}


@dataclass
class RequeryPlan:
    typed: IdentityTraits
    tried: list[TraitsQuery] = field(default_factory=list)
    results: list[str] = field(default_factory=list)

    def first(self) -> TraitsQuery:
        query = TraitsQuery(self.typed.given_names[:1], None, "premier prénom de naissance")
        self.tried.append(query)
        return query

    def after(self, result: str) -> TraitsQuery | None:
        """The next query once the last one answered ``result`` (found, not_found, several), or None."""
        self.results.append(result)
        if result == FOUND or len(self.tried) >= MAX_QUERIES:
            return None
        for candidate in self._candidates(result):
            if all((q.given_names, q.birth_place) != (candidate.given_names, candidate.birth_place)
                   for q in self.tried):
                self.tried.append(candidate)
                return candidate
        return None

    def _candidates(self, result: str) -> list[TraitsQuery]:
        given, place = self.typed.given_names, self.typed.birth_place
        everything = TraitsQuery(given, None, "tous les prénoms de la pièce d'identité")
        out: list[TraitsQuery] = []
        if result == SEVERAL or SEVERAL in self.results:
            if len(given) > 1:
                out.append(everything)
            if place:
                out.append(TraitsQuery(given, place, "prénoms et lieu de naissance"))
                out.append(TraitsQuery(given[:1], place, "premier prénom et lieu de naissance"))
            return out
        out += [TraitsQuery((name,), None, f"autre prénom de naissance ({position + 2}e)")
                for position, name in enumerate(given[1:])]
        if len(given) > 1:
            out.append(everything)
        return out

    @property
    def saw_several(self) -> bool:
        return SEVERAL in self.results

    def missing_trait(self) -> str:
        """What the user should add when the plan ends without a single identity (French, for the doctor)."""
        if self.saw_several:
            if not self.typed.birth_place:
                return ("Plusieurs identités correspondent à ces traits : ajoutez le lieu de naissance (code INSEE "
                        "de la commune de naissance, 99 suivi du code pays à l'étranger) et relancez la recherche.")
            if len(self.typed.given_names) < 2:
                return ("Plusieurs identités correspondent à ces traits, même avec le lieu de naissance : ajoutez "
                        "les autres prénoms de naissance de la pièce d'identité et relancez la recherche.")
            return ("Plusieurs identités correspondent encore à ces traits : vérifiez-les sur la pièce d'identité "
                    "(prénoms dans l'ordre, lieu de naissance) ; l'INS ne peut pas être récupéré sans lever le doute.")
        return "Aucune identité trouvée par l'INSi pour ces traits."
