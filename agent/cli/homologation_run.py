"""`relais homologation run --only CODE... --output DIR`: play CNDA cases against the DMP simulator, keep their
frames, and write the CNDA's folder tree.

For each case: a folder named by its code holding the frames of the case (one request and one response file per
exchange, ``index.csv``) and ``compte-rendu.txt``, a short French account of what was done and seen; beside them
``resultats.csv`` and ``resultats.xlsx`` in the test book's columns (Résultat, Commentaire éditeur). Cases the
agent cannot play alone are listed "Non joué" with what the LGC must capture (the book's "Éléments à fournir").
Each case played on the simulator is a rehearsal: its account says where its data depart from the book's.

The simulator plays the book's "Référentiel Patients"; the frames go to a journal in a temporary store whose key
dies with the run, so nothing of the run stays on the workstation but the folder written.

With ``[homologation] platform = "configured"`` the same cases are played against the DMP that ``[dmp]`` names (the
CNDA's test platform), as the professional ``[dmp] demo_rpps`` in indirect authentication, with the patients the
``[homologation] patient_*`` keys name (the book's "Référentiel Patients", whose traits are read from the book).
The steps only a simulator can do are listed in ``SIMULATOR_ONLY`` and skipped there, each with what the
integrator must do instead (``docs/HOMOLOGATION.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lxml import etree

from agent import __version__
from agent.clock import SystemClock
from agent.config import Config
from agent.dmp.client import DmpClient
from agent.dmp.factory import client_for_sandbox, client_from_section
from agent.dmp.models import Professional, SubmissionRequest, Visibility
from agent.errors import ConfigError, InvalidInput, NotFound, RelaisError
from agent.homologation.book import BookPatient, Perimeter, TestCase, book_dir, book_patient, load_book, plan
from agent.homologation.export import write_frames
from agent.homologation.journal import FramesJournal, FramesSettings
from agent.homologation.xlsx import verdict, write_results
from agent.reference import find_reference
from agent.softkey import SoftwareSigner
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from relais_sandbox.dmp import DmpSimulator, reidentify
from relais_sandbox.host import SandboxContext
from relais_sandbox.identities import PAT_TROIS, TestIdentity
from relais_sandbox.pki import SandboxPki

OID_TEST = "1.2.250.1.213.1.4.10"
OID_NIA_TEST = "1.2.250.1.213.1.4.9"
# Patients of the book's "Référentiel Patients" that the simulator plays.
CONTESTE = "153078987658513"  # "non créé", pour test TD0.2
MAXIMOP = "202096615708958"  # DMP fermé
ATTRIBUT = "235061058692768"  # DMP actif, aucun professionnel autorisé
PROVISOIRE = "109076322088835"  # un NIA
PETRA = "207100486108281"  # DMP actif ; le simulateur y pose l'état d'autorisation des cas 0.2-060 et 0.2-070
DR_DEMO = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")
EXAMPLE_CDA = "VAC-NOTE_2023.01.xml"
EXAMPLE_N1 = "DOC_NON_STRUCTURE_CDA-R2-N1.xml"  # CDA R2 niveau 1, PDF
DEVIATION = ("Écart avec le cahier : document d'exemple du kit CI-SIS ({example}), avec ses titre et typeCode, "
             "non le document du cahier{detail} ; à rejouer sur la plateforme du CNDA avec les documents du LGC.")
# Steps only the simulator can do, by case code: what the integrator does instead on the CNDA's platform. A case
# that sets a patient's state as /_sandbox/dmp/authorizations does (the CNDA sets it through Web-PS) is skipped
# there, with this line.
SIMULATOR_ONLY: dict[str, str] = {
    "0.2-060": "faire positionner par le CNDA (Web-PS) une autorisation expirée de l'utilisateur sur un patient du "
               "référentiel, puis jouer le test d'existence depuis le LGC (relais frames test-code 0.2-060, puis "
               "relais frames export --test 0.2-060).",
    "0.2-070": "faire bloquer l'utilisateur par le patient (le CNDA le positionne par Web-PS), puis jouer le test "
               "d'existence depuis le LGC (relais frames test-code 0.2-070, puis relais frames export "
               "--test 0.2-070).",
}


@dataclass(frozen=True, slots=True)
class RunPatients:
    """The run's test patients (INS matricules) and the patient it feeds."""

    no_dmp: str = CONTESTE
    closed: str = MAXIMOP
    not_authorised: str = ATTRIBUT
    nia: str = PROVISOIRE
    oid: str = OID_TEST
    feed: BookPatient | TestIdentity = PAT_TROIS


class Mismatch(Exception):
    """What was seen is not the book's expected result (the account says what)."""


@dataclass
class Bench:
    client: DmpClient
    reference: Path
    doctor: SoftwareSigner
    journal: FramesJournal
    patients: RunPatients = RunPatients()
    professional: Professional = DR_DEMO
    configured: bool = False
    simulator: DmpSimulator | None = None  # the in-process simulator (None on a configured platform)
    _authorised: bool = False

    def cda(self, example: str = EXAMPLE_CDA) -> tuple[bytes, str]:
        data = (self.reference / "ci-sis" / "ExemplesCDA" / example).read_bytes()
        p = self.patients.feed
        cda, uid = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                              f"2.25.{uuid.uuid4().int}")
        root = etree.fromstring(cda)
        author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
        if author is not None:
            author.set("extension", self.professional.national_id)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), uid

    def request(self, cda: bytes, uid: str, **kw: object) -> SubmissionRequest:
        p = self.patients.feed
        return SubmissionRequest(cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}", document_unique_id=uid,
                                 ins=p.ins, ins_oid=p.oid, signer=self.doctor, **kw)  # type: ignore[arg-type]

    def deviation(self, example: str, detail: str) -> str:
        if self.configured:
            return f"Document d'exemple du kit CI-SIS ({example}), non le document du cahier{detail}."
        return DEVIATION.format(example=example, detail=detail)

    async def feed(self, visibility: Visibility | None = None, replaces: str | None = None,
                   example: str = EXAMPLE_CDA) -> tuple[str, str]:
        p = self.patients.feed
        if self.configured and not self._authorised:
            # On the test platform the user may not be authorised on the fed patient's DMP yet: TD0.3, once.
            if not (await self.client.td02(p.ins, p.oid)).authorized:
                await self.client.td03(p.ins, p.oid, add=True)
            self._authorised = True
        cda, uid = self.cda(example)
        result = await self.client.submit(replace(self.request(cda, uid, visibility=visibility or Visibility()),
                                                  replaces_entry_uuid=replaces))
        found = await self.client.find_by_unique_id(p.ins, p.oid, uid)
        if [e.entry_uuid for e in found] != [result.document_entry_uuid]:
            raise Mismatch(f"document {uid} déposé mais introuvable par son identifiant (TD3.1b)")
        return uid, result.document_entry_uuid


async def _td02_absent(bench: Bench) -> str:
    status = await bench.client.td02(bench.patients.no_dmp, bench.patients.oid)
    if status.exists:
        raise Mismatch("le DMP est annoncé existant")
    return ("TD0.2 (test d'existence) pour le patient « non créé » du référentiel : le DMP répond qu'il n'existe "
            f"pas (accusé {status.ack_code}, réponse {status.query_response}). Relais n'alimente ni ne consulte.")


async def _td02_closed(bench: Bench) -> str:
    status = await bench.client.td02(bench.patients.closed, bench.patients.oid)
    if not status.exists or status.active:
        raise Mismatch("le DMP n'est pas annoncé fermé")
    return (f"TD0.2 pour un DMP fermé : statut fermé le {status.closed_on}, motif « {status.closed_reason} ». "
            "Relais n'alimente ni ne consulte un DMP fermé.")


async def _td02_not_authorised(bench: Bench) -> str:
    status = await bench.client.td02(bench.patients.not_authorised, bench.patients.oid)
    if not status.active or status.authorized:
        raise Mismatch("l'utilisateur est annoncé autorisé, ou le DMP inactif")
    return ("TD0.2 pour un DMP actif sur lequel l'utilisateur n'est pas autorisé : DMP actif, autorisation "
            f"« {status.authorization} ». La consultation est refusée tant que l'autorisation n'est pas donnée.")


async def _td02_nia(bench: Bench) -> str:
    try:
        await bench.client.td02(bench.patients.nia, OID_NIA_TEST)
    except InvalidInput as refused:
        return ("Patient identifié par un NIA : Relais refuse l'accès au DMP avant tout appel (aucune trame) : "
                f"« {refused.message} ».")
    raise Mismatch("un NIA a atteint le DMP")


def _td02_state(state: str, label: str, expected: str) -> Callable[[Bench], Awaitable[str]]:
    async def play(bench: Bench) -> str:
        sim = bench.simulator
        if sim is None or sim.service is None:
            raise Mismatch("état d'autorisation à poser par le CNDA (Web-PS) : cas du simulateur seulement")
        # What POST /_sandbox/dmp/authorizations does; on the CNDA's platform the CNDA sets it through Web-PS.
        sim.service.patients.set_authorization(PETRA, bench.professional.national_id, state)
        status = await bench.client.td02(PETRA, bench.patients.oid)
        if not status.active or status.authorization != expected or status.authorized:
            raise Mismatch(f"DMP actif : {status.active}, autorisation « {status.authorization} »")
        return (f"État posé sur le simulateur comme le CNDA le pose par Web-PS : autorisation {label} de l'utilisateur "
                f"sur le DMP du patient 79 du référentiel. TD0.2 : DMP actif, autorisation « {status.authorization} »"
                f"{' (professionnel bloqué)' if status.blocked else ''} ; Relais n'en consulte pas les documents"
                f"{' et ne l’alimente pas' if status.blocked else ''} tant que l'autorisation n'est pas valide.")
    return play


def _feed(visibility: Visibility, what: str, example: str = EXAMPLE_CDA,
          detail: str = "") -> Callable[[Bench], Awaitable[str]]:
    async def play(bench: Bench) -> str:
        uid, entry = await bench.feed(visibility, example=example)
        return (f"TD2.1 : dépôt d'{what} ({example}, signé, MTOM) pour le patient de test ; le DMP accepte "
                f"(ResponseStatusType:Success). TD3.1b : le document {uid} est retrouvé par son identifiant "
                f"(entryUUID {entry}). " + bench.deviation(example, detail))
    return play


async def _replace(bench: Bench) -> str:
    first_uid, first = await bench.feed()
    second_uid, second = await bench.feed(replaces=first)
    return (f"TD2.1 : dépôt du document {first_uid} (entryUUID {first}), puis remplacement par {second_uid} "
            f"(association RPLC vers {first}) ; le DMP accepte les deux et la nouvelle version est retrouvée "
            f"(entryUUID {second}). " + bench.deviation(EXAMPLE_CDA, ""))


async def _authorise(bench: Bench) -> str:
    who, oid = bench.patients.not_authorised, bench.patients.oid
    before = await bench.client.td02(who, oid)
    if before.authorized:
        raise Mismatch("l'utilisateur est déjà autorisé avant la TD0.3")
    answer = await bench.client.td03(who, oid, add=True)
    after = await bench.client.td02(who, oid)
    if answer != "DMPOk" or not after.authorized:
        raise Mismatch(f"TD0.3 ajout : réponse {answer}, autorisé ensuite : {after.authorized}")
    await bench.client.td03(who, oid, add=False)  # the test patient back as the book describes it
    return ("TD0.2 : utilisateur non autorisé ; TD0.3 AJOUT à la demande du professionnel : le DMP confirme "
            f"({answer}) ; TD0.2 : utilisateur autorisé. L'autorisation est ensuite retirée (TD0.3 SUPPRESSION) "
            "pour rendre le patient de test dans son état initial.")


async def _unauthorise(bench: Bench) -> str:
    who, oid = bench.patients.not_authorised, bench.patients.oid
    if not (await bench.client.td02(who, oid)).authorized:
        await bench.client.td03(who, oid, add=True)  # the case starts from an authorised user
    answer = await bench.client.td03(who, oid, add=False)
    after = await bench.client.td02(who, oid)
    if answer != "DMPOk" or after.authorized:
        raise Mismatch(f"TD0.3 suppression : réponse {answer}, autorisé ensuite : {after.authorized}")
    return (f"TD0.3 SUPPRESSION de sa propre autorisation : le DMP confirme ({answer}) ; TD0.2 : l'utilisateur "
            "n'est plus autorisé (la consultation lui est refusée jusqu'à une nouvelle autorisation).")


def _delete(visibility: Visibility, what: str, detail: str = "") -> Callable[[Bench], Awaitable[str]]:
    async def play(bench: Bench) -> str:
        uid, entry = await bench.feed(visibility)
        await bench.client.delete_unique_id(bench.patients.feed.ins, bench.patients.feed.oid, uid)
        if await bench.client.find_by_unique_id(bench.patients.feed.ins, bench.patients.feed.oid, uid):
            raise Mismatch(f"le document {uid} est encore retrouvé après sa suppression")
        return (f"TD2.1 : dépôt d'{what} {uid} (entryUUID {entry}) ; TD3.1b : son entryUUID retrouvé par son "
                "identifiant ; TD3.3c : statut Approved -> Deleted, accepté par le DMP ; une recherche ne le "
                "retrouve plus. " + bench.deviation(EXAMPLE_CDA, detail))
    return play


PLAYABLE: dict[str, Callable[[Bench], Awaitable[str]]] = {
    "0.3-010": _authorise,
    "0.3-080": _unauthorise,
    "3.3-540": _delete(Visibility(), "un document", " (document F, typeCode 11505-5 ; utilisateur autorisé sur le "
                       "DMP du patient de test, le cahier le veut non autorisé)"),
    "3.3-080": _delete(Visibility(masked_to_ps=True), "un document masqué aux professionnels",
                       " (typeCode BIL_AUTO)"),
    "0.2-010": _td02_absent,
    "0.2-020": _td02_closed,
    "0.2-030": _td02_not_authorised,
    "0.2-080": _td02_nia,
    "0.2-060": _td02_state("EXPIREE", "expirée", "expired"),
    "0.2-070": _td02_state("INTERDITE", "bloquée par le patient", "forbidden"),
    "2.1-011": _feed(Visibility(), "un document CDA R2 non structuré (niveau 1, PDF)", EXAMPLE_N1,
                     " (documents Z1…Zn, typeCode CERT_DECL, un par format géré : txt, rtf, pdf, jpeg, tiff)"),
    "2.1-050": _feed(Visibility(masked_to_ps=True), "un document masqué aux professionnels (MASQUE_PS)"),
    "2.1-060": _feed(Visibility(invisible_to_patient=True), "un document invisible au patient"),
    "2.1-160": _feed(Visibility(), "un document par l'établissement (authentification indirecte)", EXAMPLE_N1,
                     " (document A-ES, typeCode 11490-0, champs optionnels renseignés)"),
    "2.1-205": _replace,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    case: TestCase
    played: bool
    passed: bool
    account: str


def configured_bench(config: Config, reference: Path, journal: FramesJournal) -> Bench:
    """The bench of a run against the DMP ``[dmp]`` names (the CNDA's test platform), with the configured patients."""
    section, run = config.dmp, config.homologation
    if not section.url:
        raise ConfigError("[homologation] platform = \"configured\" : renseignez [dmp] url (plateforme de test du "
                          "DMP)", key="dmp.url", path=config.source)
    if not section.demo_rpps:
        raise ConfigError("plateforme configurée : l'agent joue seul les cas DMP au nom d'un professionnel de test ; "
                          "renseignez [dmp] demo_rpps, demo_family_name et demo_given_name",
                          key="dmp.demo_rpps", path=config.source)
    if not run.patient_feed:
        raise ConfigError("plateforme configurée : renseignez [homologation] patient_feed, le patient du "
                          "« Référentiel Patients » à alimenter (ex. 277076322082910, patient 59)",
                          key="homologation.patient_feed", path=config.source)
    feed = book_patient(reference / "cnda" / "dmp", run.patient_feed, run.patient_oid)
    if feed is None:
        raise ConfigError(f"[homologation] patient_feed : {run.patient_feed} n'est pas dans le « Référentiel "
                          "Patients » du cahier", key="homologation.patient_feed", path=config.source)
    professional = Professional(rpps=section.demo_rpps, family_name=section.demo_family_name,
                                given_name=section.demo_given_name)
    # Indirect authentication: the structure's certificate signs the VIHF, and the documents the run feeds.
    signer = SoftwareSigner.from_files(Path(section.structure_cert), Path(section.structure_key or
                                                                          section.structure_cert))
    client = client_from_section(section, SystemClock(), lambda: professional, lambda: signer, version=__version__,
                                 source=config.source)
    assert client is not None
    patients = RunPatients(no_dmp=run.patient_no_dmp, closed=run.patient_closed,
                           not_authorised=run.patient_not_authorised, nia=run.patient_nia, oid=run.patient_oid,
                           feed=feed)
    return Bench(client, reference, signer, journal, patients, professional, configured=True)


async def play_cases(codes: list[str], reference: Path, output: Path, *,
                     config: Config | None = None) -> list[Outcome]:
    """Play ``codes`` against the DMP simulator, or against ``config``'s DMP when its ``[homologation] platform``
    is "configured"; write the folders and the results table under ``output``."""
    book = {t.code: t for t in load_book(reference / "cnda" / "dmp").tests}
    unknown = [c for c in codes if c not in book]
    if unknown:
        raise NotFound(f"Code(s) absent(s) du cahier de tests : {', '.join(unknown)}.", code="cnda_case_unknown")
    configured = config is not None and config.homologation.platform == "configured"
    output.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="relais-homologation-") as work:
        state = Path(work)
        db = Database(state / "frames.db")
        db.open()
        cipher = ContentCipher(os.urandom(32))  # dies with the run
        journal = FramesJournal(db, cipher, SystemClock(), FramesSettings(enabled=True))
        sim: DmpSimulator | None = None
        try:
            if configured and config is not None:
                bench = configured_bench(config, reference, journal)
                where = f"la plateforme DMP configurée ({config.dmp.url})"
            else:
                ctx = SandboxContext(state / "sandbox", SandboxPki(state / "sandbox"))
                sim = DmpSimulator(reference, seed=False)
                endpoint = await sim.start(ctx)
                creds = ctx.pki.issue("doctor", common_name="Dr DEMO Alice")
                client = client_for_sandbox(endpoint, SystemClock(), lambda: DR_DEMO, reference_dir=reference,
                                            total_timeout=30.0)
                bench = Bench(client, reference, SoftwareSigner.from_files(creds.cert_path, creds.key_path), journal,
                              simulator=sim)
                where = "le simulateur du DMP"
        except BaseException:
            db.close()
            if sim is not None:
                await sim.stop()
            raise
        bench.client.transport.frames = journal
        try:
            for code in codes:
                case = book[code]
                play = PLAYABLE.get(code)
                if play is None:
                    outcomes.append(Outcome(case, False, False, "Cas à jouer depuis le LGC (écrans) : "
                                            + (" ".join(case.proofs.split()) or "requêtes, réponses et copies "
                                               "d'écran de la cinématique complète.")))
                    continue
                if configured and code in SIMULATOR_ONLY:
                    outcomes.append(Outcome(case, False, False, "Étape du simulateur seulement, non jouée sur la "
                                            "plateforme configurée ; l'intégrateur (ou le LGC) doit : "
                                            + SIMULATOR_ONLY[code]))
                    continue
                with journal.playing(code):
                    try:
                        account = await play(bench)
                        outcomes.append(Outcome(case, True, True, account))
                    except (Mismatch, RelaisError) as failed:
                        text = failed.message if isinstance(failed, RelaisError) else str(failed)
                        outcomes.append(Outcome(case, True, False, f"Résultat différent de l'attendu : {text}"))
            await journal.flush()
            for outcome in outcomes:
                if outcome.played:
                    code = outcome.case.code
                    rows = await db.read(lambda c, code=code: list(  # type: ignore[misc]
                        repo.iter_frames(c, cipher, test_code=code)))
                    folder = output / code
                    write_frames(rows, folder)
                    (folder / "compte-rendu.txt").write_text(_account(outcome, len(rows), where), encoding="utf-8")
        finally:
            await bench.client.close()
            if sim is not None:
                await sim.stop()
            db.close()
    _results(outcomes, output / "resultats.csv")
    return outcomes


def _account(outcome: Outcome, frames: int, where: str) -> str:
    case = outcome.case
    return (f"Cas {case.code} ({case.transaction_key}) : {' '.join(case.title.split())}\n"
            f"Joué par Relais contre {where}, authentification indirecte (certificat de structure).\n"
            f"Résultat attendu : {case.expected or 'non précisé'}"
            f"{' (' + case.return_code + ')' if case.return_code else ''}\n"
            f"Constaté : {outcome.account}\n"
            f"Résultat : {'conforme' if outcome.passed else 'NON conforme'} ; {frames} échange(s) dans ce dossier "
            "(requête et réponse brutes, index.csv).\n")


def _results(outcomes: list[Outcome], path: Path) -> None:
    """``resultats.csv`` and ``resultats.xlsx``: the same table, in the test book's columns."""
    write_results(path, "Phase 2 - Tests", [
        [o.case.transaction_key, o.case.code, " ".join(o.case.title.split()), o.case.expected, o.case.return_code,
         o.account, verdict(o.played, o.passed)] for o in outcomes])


def run_cases(args: argparse.Namespace, config: Config, perimeter: Perimeter) -> int:
    reference = find_reference(config.homologation.reference_dir, marker="cnda")
    if reference is None:
        book_dir(config.homologation.reference_dir)  # raises the French "book missing" error
        return 2
    # Without --only: every case of the perimeter's plan (those the agent cannot play are listed "Non joué").
    codes = list(args.only) if args.only else [t.code for t in plan(load_book(reference / "cnda" / "dmp"),
                                                                    perimeter).tests]
    outcomes = asyncio.run(play_cases(codes, reference, Path(args.output), config=config))
    for o in outcomes:
        state = ("conforme" if o.passed else "NON conforme") if o.played else "non joué"
        print(f"{o.case.code}\t{state}\t{o.account[:110]}")
    print(f"Preuves écrites dans {args.output} (un dossier par cas, resultats.csv).")
    return 0 if all(o.passed for o in outcomes if o.played) else 1
