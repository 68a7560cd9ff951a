"""`relais homologation plan|run --service insi`: the CNDA's INSi cases, played against the configured INSi.

The CNDA's INSi material (``cnda/insi/`` of the reference kit: test 1.01's carte Vitale, test 2.03's traits, test
3.01's identity, the WS_INS4 lots to verify) gives the cases' data; the cases themselves are the ones the CNDA's
INSi procedure names (as DevBox-Santé and the public homologation tracker publish them: 1.01, 1.02, 1.03, 1.07,
2.01, 2.02, 2.02 bis, 2.03, 3.01, 3.02, WS_INS4). The CNDA's INSi book is not public: the results table uses the
DMP book's columns (Résultat, Commentaire éditeur), which the CNDA reads the same way.

Against the simulator (``[homologation] platform = "simulator"``, the default) every case the agent can play alone
is played; against the configured INSi (``platform = "configured"``: the CNDA's / CNAM's test platform in
``[insi]``), the steps only the simulator can do (the CNDA's answer injector) are skipped with a line saying what
the integrator must do, and the calls are signed by the structure certificate (``[insi] structure_cert``), the
only signer the agent holds without a card. Each case played writes a folder with its frames and a short French
account (``compte-rendu.txt``), beside ``resultats.csv`` and ``resultats.xlsx``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from agent import __version__
from agent.clock import Clock, SystemClock
from agent.config import Config, InsiSection
from agent.domain.ins import OID_INS_NIA, OID_INS_NIR, Ins
from agent.domain.traits import IdentityTraits, parse_traits
from agent.errors import ConfigError, NotFound, RelaisError
from agent.homologation.export import write_frames
from agent.homologation.journal import FramesJournal, FramesSettings
from agent.homologation.xlsx import verdict, write_results
from agent.ins import search as insi_search
from agent.ins import soap
from agent.ins.client import Caller, InsiClient
from agent.ins.factory import build_insi_client
from agent.softkey import SoftwareSigner
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

SYSTEMS = {"INS_NIR": OID_INS_NIR, "INS_NIA": OID_INS_NIA}
SIM_STRUCTURE_ID = "10B0152872"  # the simulator's structure (any identifier: the sandbox CA vouches for it)
SIM_DOCTOR_ID = "810003456789"


class Mismatch(Exception):
    """What was seen is not the expected result (the account says what)."""


@dataclass
class InsiBench:
    client: InsiClient
    reference: Path
    journal: FramesJournal
    db: Database
    cipher: ContentCipher
    clock: Clock
    cps: Caller | None  # the professional's CPS (simulator only: a card is the LGC's business on a real platform)
    structure: Caller | None  # the structure certificate over mutual TLS
    simulator: Any = None  # the in-process InsiSimulator, None on a configured platform
    code: str = ""

    @property
    def caller(self) -> Caller:
        caller = self.structure or self.cps
        if caller is None:
            raise ConfigError("aucun signataire INSi : renseignez [insi] structure_cert, structure_key et "
                              "structure_id (certificat de structure INSI-AUTO / INSI-MANU)", key="insi.structure_cert")
        return caller

    def material(self, name: str) -> dict[str, Any]:
        path = self.reference / "cnda" / "insi" / name
        if not path.is_file():
            raise Mismatch(f"matériel de test du CNDA absent : cnda/insi/{name}")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    async def requests(self) -> list[bytes]:
        """The raw requests sent so far for the case being played (from the frames journal)."""
        await self.journal.flush()
        code = self.code
        rows = await self.db.read(lambda c: list(repo.iter_frames(c, self.cipher, test_code=code)))
        return [r.request for r in rows if r.request is not None]


def lot_identity(item: dict[str, Any]) -> tuple[Ins, IdentityTraits]:
    """The INS and the normalised traits of one identity of the CNDA's material (``matriculeINS``,
    ``traitsIdentite``), as the LGC would send them to INSi."""
    number, traits = item["matriculeINS"], item["traitsIdentite"]
    ins = Ins(f"{number['valeur']}{number['cle']}".upper(), SYSTEMS.get(number.get("identifiantSysteme", ""),
                                                                         OID_INS_NIR))
    typed, problems = parse_traits({"birth_name": traits["nomFamille"],
                                    "given_names": str(traits.get("prenomActeNaissance") or ""),
                                    "sex": traits["sexeAdministratif"], "birth_date": traits["dateNaissance"],
                                    "birth_place": traits.get("lieuNaissance")}, SystemClock().now().date())
    if typed is None:
        raise Mismatch(f"traits du matériel illisibles : {problems}")
    return ins, typed


def _vitale_query(test: dict[str, Any]) -> soap.VitaleQuery:
    date = str(test["dateNaissance"])  # JJMMAAAA, as the card writes it
    return soap.VitaleQuery(insured_nir=str(test["nirOuvrantDroit"]), birth_name="",
                            birth_date=f"{date[4:8]}-{date[2:4]}-{date[0:2]}",
                            birth_rank=int(test.get("rangNaissance") or 1), card_serial=str(test["numSerieCarte"]))


def _found(answer: soap.InsiAnswer) -> str:
    if answer.ins is None or answer.traits is None:
        return f"CR {answer.code} ({answer.label or answer.result})"
    t = answer.traits
    return (f"CR {answer.code} : INS {answer.ins.value} (OID {answer.ins.oid}), {t.birth_name} "
            f"{' '.join(t.given_names)}, {t.sex}, né(e) le {t.birth_date}")


async def _1_01(bench: InsiBench) -> str:
    test = bench.material("test1_01.json")
    if bench.cps is None:
        raise Mismatch("sans CPS l'appel par carte Vitale passe par le certificat de structure")
    answer = await bench.client.search_vitale(_vitale_query(test), bench.cps)
    if answer.ins is None or answer.ins.value[:13] != str(test["nirOuvrantDroit"])[:13]:
        raise Mismatch(f"l'INSi répond {_found(answer)}, non l'INS de l'ouvrant droit de la carte")
    sent = (await bench.requests())[-1]
    if str(test["numSerieCarte"]).encode() not in sent or b"COUVERTURE" not in sent:
        raise Mismatch("la requête ne porte pas l'assertion carte Vitale ou la COUVERTURE")
    return (f"rechercherInsAvecCarteVitale, carte INSi 01 (n° de série {test['numSerieCarte']}, ouvrant droit "
            f"{test['nirOuvrantDroit']}, bénéficiaire né le {test['dateNaissance']}, rang {test['rangNaissance']}) : "
            f"assertion du professionnel et assertion carte Vitale signées à l'envoi, ContexteBAM/COUVERTURE "
            f"renseignée ; {_found(answer)}.")


async def _1_07(bench: InsiBench) -> str:
    from relais_sandbox.insi import Injection

    assert bench.simulator is not None
    bench.simulator.injection = Injection("CR01", after="technical_error", times=1)
    _, typed = _ruth(bench)
    outcome = await insi_search.search_traits(bench.client, typed, bench.caller)
    if len(outcome.attempts) < 2:
        raise Mismatch("pas de seconde requête après le CR 01 injecté")
    tried = " ; ".join(f"prénoms « {' '.join(a['given_names'])} » → {a['result']}" for a in outcome.attempts)
    return ("Injecteur du simulateur : une erreur technique (siram_40) puis un CR 01. Relais réessaie après "
            f"l'erreur technique, puis relance avec d'autres critères : {tried}. Dernière réponse : "
            f"{_found(outcome.answer)}.")


def _ruth(bench: InsiBench) -> tuple[Ins, IdentityTraits]:
    """Ruth NESSI (card INSi 01's insured person), as the WS_INS4 lots give her traits."""
    for item in bench.material("insi_a_verifier_lot2_1.0.1.json")["lotIdentifiants"]:
        if item["matriculeINS"]["valeur"] == "2770763220829":
            return lot_identity(item)
    raise Mismatch("Ruth NESSI absente du lot 2")


async def _2_02(bench: InsiBench) -> str:
    if bench.cps is None:
        raise Mismatch("CPS requise")
    _, typed = _ruth(bench)
    answer = await bench.client.search_traits(typed, bench.cps)
    sent = (await bench.requests())[-1]
    missing = [name for name in ("identifiantFacturation", "codeSpecialiteAMO", "secteurActivite",
                                 "X509SubjectName", "NameQualifier") if name.encode() not in sent]
    if missing:
        raise Mismatch(f"assertion du professionnel sans {', '.join(missing)}")
    return ("rechercherInsAvecTraitsIdentite signée par la CPS : l'assertion porte Issuer (format "
            "X509SubjectName), NameID avec NameQualifier, identifiantFacturation, codeSpecialiteAMO, "
            f"secteurActivite. {_found(answer)}.")


async def _2_02_bis(bench: InsiBench) -> str:
    if bench.structure is None:
        raise Mismatch("certificat de structure non configuré ([insi] structure_cert)")
    _, typed = _ruth(bench)
    answer = await bench.client.search_traits(typed, bench.structure)
    if answer.result != "found":
        raise Mismatch(f"l'INSi répond {_found(answer)}")
    return ("Appel authentifié par le certificat de structure en TLS mutuel (point d'accès [insi] url), qui signe "
            f"aussi l'assertion ; aucune CPS. {_found(answer)}.")


async def _2_03(bench: InsiBench) -> str:
    test = bench.material("test2_03_cas1.json")
    typed, problems = parse_traits({"birth_name": test["nomNaissance"], "given_names": test["prenoms"],
                                    "sex": test["sexe"], "birth_date": test["dateNaissance"]},
                                   bench.clock.now().date())
    if typed is None:
        raise Mismatch(f"traits refusés avant l'appel : {problems}")
    outcome = await insi_search.search_traits(bench.client, typed, bench.caller)
    first = (await bench.requests())[0]
    if typed.birth_name.encode() not in first:
        raise Mismatch(f"nom de naissance non transmis tel que l'INSi l'écrit ({typed.birth_name})")
    return (f"rechercherInsAvecTraitsIdentite avec « {test['nomNaissance']} », « {' '.join(test['prenoms'])} » : "
            f"traits normalisés envoyés ({typed.birth_name}, {typed.first_given_name.upper()}) ; "
            f"{len(outcome.attempts)} requête(s) ; réponse {_found(outcome.answer)}"
            + (f" ; message à l'utilisateur : « {outcome.message} »" if outcome.message else "") + ".")


async def _3_01(bench: InsiBench) -> str:
    ins, typed = lot_identity(bench.material("test3_01.json")["ins"])
    outcome = await insi_search.verify(bench.client, ins, typed, bench.caller)
    if outcome.result != "match":
        raise Mismatch(f"vérification « {outcome.result} » ({', '.join(outcome.differences)})")
    return (f"Vérification de l'INS {ins.value} avec ses traits complets ({typed.birth_name} "
            f"{' '.join(typed.given_names)}, {typed.sex}, {typed.birth_date}, {typed.birth_place}) : l'INSi renvoie "
            "ce même INS et les mêmes traits ; identité vérifiée.")


def _wrong_pair(bench: InsiBench) -> tuple[Ins, IdentityTraits]:
    """The first entry of lot 2 whose matricule already came with other traits (Ruth NESSI's matricule with
    NATHALIE's traits): a pair that must not verify."""
    seen: dict[str, str] = {}
    for item in bench.material("insi_a_verifier_lot2_1.0.1.json")["lotIdentifiants"]:
        ins, typed = lot_identity(item)
        who = f"{typed.birth_name} {' '.join(typed.given_names)} {typed.birth_date}"
        if ins.value in seen and seen[ins.value] != who:
            return ins, typed
        seen.setdefault(ins.value, who)
    raise Mismatch("le lot 2 n'a pas de couple INS / traits discordant")


async def _3_02(bench: InsiBench) -> str:
    ins, typed = _wrong_pair(bench)
    outcome = await insi_search.verify(bench.client, ins, typed, bench.caller)
    if outcome.result == "match":
        raise Mismatch("un INS vérifié avec les traits d'une autre personne")
    return (f"Vérification de l'INS {ins.value} avec les traits {typed.birth_name} {' '.join(typed.given_names)} "
            f"({typed.birth_date}), qui ne sont pas ceux de son titulaire : résultat « {outcome.result} »"
            + (f", écarts : {', '.join(outcome.differences)}" if outcome.differences else "")
            + ". L'identité n'est pas qualifiée.")


def _lot(number: int) -> Callable[[InsiBench], Awaitable[str]]:
    async def play(bench: InsiBench) -> str:
        items = bench.material(f"insi_a_verifier_lot{number}_1.0.1.json")["lotIdentifiants"]
        lines: list[str] = []
        matched = 0
        for item in items:
            ins, typed = lot_identity(item)
            outcome = await insi_search.verify(bench.client, ins, typed, bench.caller)
            matched += outcome.result == "match"
            lines.append(f"{ins.value} {typed.birth_name} {' '.join(typed.given_names)} → {outcome.result}"
                         + (f" ({', '.join(outcome.differences)})" if outcome.differences else ""))
        if not matched:
            raise Mismatch("aucune identité du lot vérifiée")
        return (f"Vérification des {len(items)} identités du lot {number}, une requête chacune : {matched} "
                f"vérifiée(s), les autres non (couples INS / traits discordants du lot) : " + " ; ".join(lines) + ".")
    return play


@dataclass(frozen=True, slots=True)
class InsiCase:
    code: str
    transaction: str
    title: str
    expected: str
    return_code: str = ""
    play: Callable[[InsiBench], Awaitable[str]] | None = None
    lgc: str = ""  # what the LGC must play and capture when the agent cannot play the case alone
    simulator_only: str = ""  # a step only the simulator can do: what the integrator does on the real platform
    needs_cps: bool = False


CASES: tuple[InsiCase, ...] = (
    InsiCase("1.01", "INSi RecVitale", "Recherche de l'INS avec la carte Vitale (carte de test INSi 01, Ruth NESSI)",
             "OK", "CR 00, INS de l'ouvrant droit", _1_01, needs_cps=True),
    InsiCase("1.02", "INSi RecVitale", "Obsolescence de l'assertion carte Vitale : 20 minutes entre la sélection "
             "du bénéficiaire et l'envoi", "OK", "CR 00", lgc="Sélectionner le bénéficiaire dans le LGC, attendre "
             "20 minutes, envoyer ; capturer l'écran de sélection, la requête (assertion émise à l'envoi) et le "
             "résultat."),
    InsiCase("1.03", "INSi RecVitale", "Changement de carte Vitale entre la sélection et l'envoi (carte INSi 01 "
             "puis carte INSi 04)", "Refus", "aucune recherche sur la mauvaise personne", lgc="Sélectionner Ruth "
             "sur la carte INSi 01, insérer la carte INSi 04, envoyer ; capturer le message du LGC (nouvelle "
             "sélection demandée)."),
    InsiCase("1.07", "INSi RecSansVitale", "Réponse CR 01 injectée après une erreur technique : nouvelle requête "
             "avec d'autres critères", "OK", "seconde requête envoyée", _1_07,
             simulator_only="Demander au CNDA l'injection de REP_CR01.xml (injecteur de la plateforme) puis jouer "
             "la recherche par traits depuis le LGC ; les trames restent dans le journal (relais frames export)."),
    InsiCase("2.01", "INSi", "Pas de CPS, code porteur non saisi ou carte changée avant l'appel", "Refus",
             "message explicite, aucun appel", lgc="Retirer la CPS (ou ne pas saisir le code) et lancer une "
             "recherche depuis le LGC ; capturer le message (Relais répond 503 cps_absent, aucun appel)."),
    InsiCase("2.02", "INSi RecSansVitale", "Contenu de l'assertion du professionnel (CPS)", "OK",
             "identifiantFacturation, codeSpecialiteAMO, secteurActivite", _2_02, needs_cps=True),
    InsiCase("2.02 bis", "INSi RecSansVitale", "Authentification par certificat de structure (INSI-AUTO / "
             "INSI-MANU) en TLS mutuel", "OK", "CR 00", _2_02_bis),
    InsiCase("2.03", "INSi RecSansVitale", "Recherche par traits « D'ARTAGNAN DE L'HERAULT », « Pierre-Alain » "
             "(cas 1)", "OK", "traits normalisés envoyés, réponse traitée", _2_03),
    InsiCase("3.01", "INSi vérification", "Vérification d'un INS connu avec ses traits complets", "OK",
             "INS et traits concordants", _3_01),
    InsiCase("3.02", "INSi vérification", "Vérification d'un INS avec les traits d'une autre personne", "KO",
             "identité non vérifiée", _3_02),
    InsiCase("WS_INS4-lot1", "INSi vérification", "Vérification du lot d'identités n° 1", "OK",
             "une réponse par identité", _lot(1)),
    InsiCase("WS_INS4-lot2", "INSi vérification", "Vérification du lot d'identités n° 2", "OK",
             "une réponse par identité", _lot(2)),
    InsiCase("WS_INS4-lot3", "INSi vérification", "Vérification du lot d'identités n° 3", "OK",
             "une réponse par identité", _lot(3)),
)


def how_played(case: InsiCase, configured: bool) -> str:
    """How the run treats this case: the plan's last column."""
    if case.play is None:
        return "à jouer depuis le LGC : " + case.lgc
    if configured and case.simulator_only:
        return ("étape du simulateur seulement, non jouée sur la plateforme configurée ; l'intégrateur (ou le LGC) "
                "doit : " + case.simulator_only[0].lower() + case.simulator_only[1:])
    if configured and case.needs_cps:
        return "à jouer depuis le LGC avec la CPS (l'agent seul signe avec le certificat de structure)"
    return "joué par Relais"


@dataclass(frozen=True, slots=True)
class Outcome:
    case: InsiCase
    played: bool
    passed: bool
    account: str


@dataclass
class _Platform:
    client: InsiClient
    cps: Caller | None
    structure: Caller | None
    simulator: Any = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def _simulator(state: Path, reference: Path, clock: Clock) -> _Platform:
    from relais_sandbox.host import SandboxContext
    from relais_sandbox.insi import InsiSimulator
    from relais_sandbox.pki import SandboxPki

    ctx = SandboxContext(state / "sandbox", SandboxPki(state / "sandbox"))
    sim = InsiSimulator(clock=clock, reference_dir=reference)
    endpoint = await sim.start(ctx)
    title = x509.NameAttribute(x509.oid.NameOID.TITLE, "10")  # profession: médecin
    doctor = ctx.pki.issue("doctor", common_name="Dr DEMO Alice", client=True, extra_subject=[title])
    structure = ctx.pki.issue("structure", common_name="Cabinet de test (INSI-AUTO)", client=True)
    section = InsiSection(cps_name_qualifier="1.2.250.1.71.4.2.1", structure_name_qualifier="1.2.250.1.71.4.2.2")
    client = build_insi_client(section, clock, version=__version__, instance=str(uuid.uuid4()),
                               endpoint={**endpoint, "client_cert": str(structure.cert_path),
                                         "client_key": str(structure.key_path)})
    assert client is not None
    settings = client.settings
    cps = insi_search.cps_caller(settings, SoftwareSigner.from_files(doctor.cert_path, doctor.key_path),
                                 SIM_DOCTOR_ID, "10")
    struct = insi_search.structure_caller(settings, SoftwareSigner.from_files(structure.cert_path,
                                                                              structure.key_path), SIM_STRUCTURE_ID)
    return _Platform(client, cps, struct, sim, [sim.stop])


def _configured(config: Config, clock: Clock) -> _Platform:
    section = config.insi
    client = build_insi_client(section, clock, version=__version__, instance=config.workstation_id)
    if client is None:
        raise ConfigError("[homologation] platform = \"configured\" : renseignez [insi] url (plateforme de test "
                          "de l'INSi)", key="insi.url", path=config.source)
    if not (client.structure_signer and section.structure_id):
        raise ConfigError("plateforme configurée : l'agent joue les cas INSi avec le certificat de structure ; "
                          "renseignez [insi] structure_cert, structure_key et structure_id",
                          key="insi.structure_cert", path=config.source)
    structure = insi_search.structure_caller(client.settings, client.structure_signer, section.structure_id)
    return _Platform(client, None, structure)


def plan_rows(configured: bool) -> list[list[str]]:
    rows = [["Transaction", "Code test", "Libellé cas de test", "Résultat attendu en retour", "Code retour",
             "Jeu"]]
    rows += [[c.transaction, c.code, c.title, c.expected, c.return_code, how_played(c, configured)] for c in CASES]
    return rows


async def play_insi_cases(codes: list[str] | None, reference: Path, output: Path, *,
                          config: Config | None = None) -> list[Outcome]:
    """Play ``codes`` (default: every case) against the simulator, or against ``config``'s INSi when its
    ``[homologation] platform`` is "configured"; write the folders and the results table under ``output``."""
    known = {c.code: c for c in CASES}
    wanted = codes or [c.code for c in CASES]
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise NotFound(f"Cas INSi inconnu(s) : {', '.join(unknown)} (connus : {', '.join(known)}).",
                       code="cnda_case_unknown")
    configured = config is not None and config.homologation.platform == "configured"
    output.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="relais-homologation-insi-") as work:
        state = Path(work)
        db = Database(state / "frames.db")
        db.open()
        cipher = ContentCipher(os.urandom(32))  # dies with the run
        journal = FramesJournal(db, cipher, clock, FramesSettings(enabled=True))
        platform = _configured(config, clock) if configured and config is not None else \
            await _simulator(state, reference, clock)
        platform.client.frames = journal
        bench = InsiBench(platform.client, reference, journal, db, cipher, clock, platform.cps, platform.structure,
                          platform.simulator)
        try:
            for code in wanted:
                case = known[code]
                how = how_played(case, configured)
                if how != "joué par Relais":
                    outcomes.append(Outcome(case, False, False, how[0].upper() + how[1:].rstrip(".") + "."))
                    continue
                bench.code = code
                with journal.playing(code):
                    try:
                        outcomes.append(Outcome(case, True, True, await case.play(bench)))  # type: ignore[misc]
                    except (Mismatch, RelaisError) as failed:
                        text = failed.message if isinstance(failed, RelaisError) else str(failed)
                        outcomes.append(Outcome(case, True, False, f"Résultat différent de l'attendu : {text}"))
            await journal.flush()
            where = ("la plateforme INSi configurée" if configured else "le simulateur INSi") + \
                (" (certificat de structure, TLS mutuel)" if configured else "")
            for outcome in outcomes:
                if outcome.played:
                    code = outcome.case.code
                    rows = await db.read(lambda c, code=code: list(  # type: ignore[misc]
                        repo.iter_frames(c, cipher, test_code=code)))
                    folder = output / code.replace(" ", "_")
                    write_frames(rows, folder)
                    (folder / "compte-rendu.txt").write_text(_account(outcome, len(rows), where), encoding="utf-8")
        finally:
            await platform.client.close()
            for close in platform.closers:
                await close()
            db.close()
    _results(outcomes, output / "resultats.csv")
    return outcomes


def _account(outcome: Outcome, frames: int, where: str) -> str:
    case = outcome.case
    return (f"Cas INSi {case.code} ({case.transaction}) : {case.title}\n"
            f"Joué par Relais contre {where}.\n"
            f"Résultat attendu : {case.expected}{' (' + case.return_code + ')' if case.return_code else ''}\n"
            f"Constaté : {outcome.account}\n"
            f"Résultat : {'conforme' if outcome.passed else 'NON conforme'} ; {frames} échange(s) dans ce dossier "
            "(requête et réponse brutes, index.csv).\n")


def _results(outcomes: list[Outcome], path: Path) -> None:
    write_results(path, "Tests INSi", [
        [o.case.transaction, o.case.code, o.case.title, o.case.expected, o.case.return_code, o.account,
         verdict(o.played, o.passed)] for o in outcomes])


def run_insi(codes: list[str] | None, reference: Path, output: Path, config: Config) -> int:
    outcomes = asyncio.run(play_insi_cases(codes, reference, output, config=config))
    for o in outcomes:
        state = ("conforme" if o.passed else "NON conforme") if o.played else "non joué"
        print(f"{o.case.code}\t{state}\t{o.account[:110]}")
    print(f"Preuves écrites dans {output} (un dossier par cas joué, resultats.csv, resultats.xlsx).")
    return 0 if all(o.passed for o in outcomes if o.played) else 1
