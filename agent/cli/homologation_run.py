"""`relais homologation run --only CODE... --output DIR`: play CNDA cases against the DMP simulator, keep their
frames, and write the CNDA's folder tree.

For each case: a folder named by its code holding the frames of the case (one request and one response file per
exchange, ``index.csv``) and ``compte-rendu.txt``, a short French account of what was done and seen; beside them
``resultats.csv`` and ``resultats.xlsx`` in the test book's columns (Résultat, Commentaire éditeur). Cases the
agent cannot play alone are listed "Non joué" with what the LGC must capture (the book's "Éléments à fournir").
Each case played on the simulator is a rehearsal: its account says where its data depart from the book's.

The simulator plays the book's "Référentiel Patients"; the frames go to a journal in a temporary store whose key
dies with the run, so nothing of the run stays on the workstation but the folder written.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lxml import etree

from agent.clock import SystemClock
from agent.config import Config
from agent.dmp.client import DmpClient
from agent.dmp.factory import client_for_sandbox
from agent.dmp.models import Professional, SubmissionRequest, Visibility
from agent.errors import InvalidInput, NotFound, RelaisError
from agent.homologation.book import Perimeter, TestCase, book_dir, load_book, plan
from agent.homologation.export import write_frames
from agent.homologation.journal import FramesJournal, FramesSettings
from agent.homologation.xlsx import write_xlsx
from agent.reference import find_reference
from agent.softkey import SoftwareSigner
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from relais_sandbox.dmp import DmpSimulator, reidentify
from relais_sandbox.host import SandboxContext
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki

RESULT_COLUMNS = ["Transaction", "Code test", "Libellé cas de test", "Résultat attendu en retour", "Code retour",
                  "Commentaire éditeur", "Résultat"]
OID_TEST = "1.2.250.1.213.1.4.10"
OID_NIA_TEST = "1.2.250.1.213.1.4.9"
# Patients of the book's "Référentiel Patients" that the simulator plays.
CONTESTE = "153078987658513"  # "non créé", pour test TD0.2
MAXIMOP = "202096615708958"  # DMP fermé
ATTRIBUT = "235061058692768"  # DMP actif, aucun professionnel autorisé
PROVISOIRE = "109076322088835"  # un NIA
DR_DEMO = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")
EXAMPLE_CDA = "VAC-NOTE_2023.01.xml"
EXAMPLE_N1 = "DOC_NON_STRUCTURE_CDA-R2-N1.xml"  # CDA R2 niveau 1, PDF
DEVIATION = ("Écart avec le cahier : document d'exemple du kit CI-SIS ({example}), avec ses titre et typeCode, "
             "non le document du cahier{detail} ; à rejouer sur la plateforme du CNDA avec les documents du LGC.")


class Mismatch(Exception):
    """What was seen is not the book's expected result (the account says what)."""


@dataclass
class Bench:
    client: DmpClient
    reference: Path
    doctor: SoftwareSigner
    journal: FramesJournal

    def cda(self, example: str = EXAMPLE_CDA) -> tuple[bytes, str]:
        data = (self.reference / "ci-sis" / "ExemplesCDA" / example).read_bytes()
        p = PAT_TROIS
        cda, uid = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                              f"2.25.{uuid.uuid4().int}")
        root = etree.fromstring(cda)
        author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
        if author is not None:
            author.set("extension", DR_DEMO.national_id)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), uid

    def request(self, cda: bytes, uid: str, **kw: object) -> SubmissionRequest:
        return SubmissionRequest(cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}", document_unique_id=uid,
                                 ins=PAT_TROIS.ins, ins_oid=PAT_TROIS.oid, signer=self.doctor, **kw)  # type: ignore[arg-type]

    async def feed(self, visibility: Visibility | None = None, replaces: str | None = None,
                   example: str = EXAMPLE_CDA) -> tuple[str, str]:
        cda, uid = self.cda(example)
        result = await self.client.submit(replace(self.request(cda, uid, visibility=visibility or Visibility()),
                                                  replaces_entry_uuid=replaces))
        found = await self.client.find_by_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid)
        if [e.entry_uuid for e in found] != [result.document_entry_uuid]:
            raise Mismatch(f"document {uid} déposé mais introuvable par son identifiant (TD3.1b)")
        return uid, result.document_entry_uuid


async def _td02_absent(bench: Bench) -> str:
    status = await bench.client.td02(CONTESTE, OID_TEST)
    if status.exists:
        raise Mismatch("le DMP est annoncé existant")
    return ("TD0.2 (test d'existence) pour le patient « non créé » du référentiel : le DMP répond qu'il n'existe "
            f"pas (accusé {status.ack_code}, réponse {status.query_response}). Relais n'alimente ni ne consulte.")


async def _td02_closed(bench: Bench) -> str:
    status = await bench.client.td02(MAXIMOP, OID_TEST)
    if not status.exists or status.active:
        raise Mismatch("le DMP n'est pas annoncé fermé")
    return (f"TD0.2 pour un DMP fermé : statut fermé le {status.closed_on}, motif « {status.closed_reason} ». "
            "Relais n'alimente ni ne consulte un DMP fermé.")


async def _td02_not_authorised(bench: Bench) -> str:
    status = await bench.client.td02(ATTRIBUT, OID_TEST)
    if not status.active or status.authorized:
        raise Mismatch("l'utilisateur est annoncé autorisé, ou le DMP inactif")
    return ("TD0.2 pour un DMP actif sur lequel l'utilisateur n'est pas autorisé : DMP actif, autorisation "
            f"« {status.authorization} ». La consultation est refusée tant que l'autorisation n'est pas donnée.")


async def _td02_nia(bench: Bench) -> str:
    try:
        await bench.client.td02(PROVISOIRE, OID_NIA_TEST)
    except InvalidInput as refused:
        return ("Patient identifié par un NIA : Relais refuse l'accès au DMP avant tout appel (aucune trame) : "
                f"« {refused.message} ».")
    raise Mismatch("un NIA a atteint le DMP")


def _feed(visibility: Visibility, what: str, example: str = EXAMPLE_CDA,
          detail: str = "") -> Callable[[Bench], Awaitable[str]]:
    async def play(bench: Bench) -> str:
        uid, entry = await bench.feed(visibility, example=example)
        return (f"TD2.1 : dépôt d'{what} ({example}, signé, MTOM) pour le patient de test ; le DMP accepte "
                f"(ResponseStatusType:Success). TD3.1b : le document {uid} est retrouvé par son identifiant "
                f"(entryUUID {entry}). " + DEVIATION.format(example=example, detail=detail))
    return play


async def _replace(bench: Bench) -> str:
    first_uid, first = await bench.feed()
    second_uid, second = await bench.feed(replaces=first)
    return (f"TD2.1 : dépôt du document {first_uid} (entryUUID {first}), puis remplacement par {second_uid} "
            f"(association RPLC vers {first}) ; le DMP accepte les deux et la nouvelle version est retrouvée "
            f"(entryUUID {second}). " + DEVIATION.format(example=EXAMPLE_CDA, detail=""))


async def _authorise(bench: Bench) -> str:
    before = await bench.client.td02(ATTRIBUT, OID_TEST)
    if before.authorized:
        raise Mismatch("l'utilisateur est déjà autorisé avant la TD0.3")
    answer = await bench.client.td03(ATTRIBUT, OID_TEST, add=True)
    after = await bench.client.td02(ATTRIBUT, OID_TEST)
    if answer != "DMPOk" or not after.authorized:
        raise Mismatch(f"TD0.3 ajout : réponse {answer}, autorisé ensuite : {after.authorized}")
    await bench.client.td03(ATTRIBUT, OID_TEST, add=False)  # the test patient back as the book describes it
    return ("TD0.2 : utilisateur non autorisé ; TD0.3 AJOUT à la demande du professionnel : le DMP confirme "
            f"({answer}) ; TD0.2 : utilisateur autorisé. L'autorisation est ensuite retirée (TD0.3 SUPPRESSION) "
            "pour rendre le patient de test dans son état initial.")


async def _unauthorise(bench: Bench) -> str:
    if not (await bench.client.td02(ATTRIBUT, OID_TEST)).authorized:
        await bench.client.td03(ATTRIBUT, OID_TEST, add=True)  # the case starts from an authorised user
    answer = await bench.client.td03(ATTRIBUT, OID_TEST, add=False)
    after = await bench.client.td02(ATTRIBUT, OID_TEST)
    if answer != "DMPOk" or after.authorized:
        raise Mismatch(f"TD0.3 suppression : réponse {answer}, autorisé ensuite : {after.authorized}")
    return (f"TD0.3 SUPPRESSION de sa propre autorisation : le DMP confirme ({answer}) ; TD0.2 : l'utilisateur "
            "n'est plus autorisé (la consultation lui est refusée jusqu'à une nouvelle autorisation).")


def _delete(visibility: Visibility, what: str, detail: str = "") -> Callable[[Bench], Awaitable[str]]:
    async def play(bench: Bench) -> str:
        uid, entry = await bench.feed(visibility)
        await bench.client.delete_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid)
        if await bench.client.find_by_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid):
            raise Mismatch(f"le document {uid} est encore retrouvé après sa suppression")
        return (f"TD2.1 : dépôt d'{what} {uid} (entryUUID {entry}) ; TD3.1b : son entryUUID retrouvé par son "
                "identifiant ; TD3.3c : statut Approved -> Deleted, accepté par le DMP ; une recherche ne le "
                "retrouve plus. " + DEVIATION.format(example=EXAMPLE_CDA, detail=detail))
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


async def play_cases(codes: list[str], reference: Path, output: Path) -> list[Outcome]:
    book = {t.code: t for t in load_book(reference / "cnda" / "dmp").tests}
    unknown = [c for c in codes if c not in book]
    if unknown:
        raise NotFound(f"Code(s) absent(s) du cahier de tests : {', '.join(unknown)}.", code="cnda_case_unknown")
    output.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="relais-homologation-") as work:
        state = Path(work)
        db = Database(state / "frames.db")
        db.open()
        cipher = ContentCipher(os.urandom(32))  # dies with the run
        journal = FramesJournal(db, cipher, SystemClock(), FramesSettings(enabled=True))
        ctx = SandboxContext(state / "sandbox", SandboxPki(state / "sandbox"))
        sim = DmpSimulator(reference, seed=False)
        endpoint = await sim.start(ctx)
        creds = ctx.pki.issue("doctor", common_name="Dr DEMO Alice")
        client = client_for_sandbox(endpoint, SystemClock(), lambda: DR_DEMO, reference_dir=reference,
                                    total_timeout=30.0)
        client.transport.frames = journal
        bench = Bench(client, reference, SoftwareSigner.from_files(creds.cert_path, creds.key_path), journal)
        try:
            for code in codes:
                case = book[code]
                play = PLAYABLE.get(code)
                if play is None:
                    outcomes.append(Outcome(case, False, False, "Cas à jouer depuis le LGC (écrans) : "
                                            + (" ".join(case.proofs.split()) or "requêtes, réponses et copies "
                                               "d'écran de la cinématique complète.")))
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
                    (folder / "compte-rendu.txt").write_text(_account(outcome, len(rows)), encoding="utf-8")
        finally:
            await client.close()
            await sim.stop()
            db.close()
    _results(outcomes, output / "resultats.csv")
    return outcomes


def _account(outcome: Outcome, frames: int) -> str:
    case = outcome.case
    return (f"Cas {case.code} ({case.transaction_key}) : {' '.join(case.title.split())}\n"
            f"Joué par Relais contre le simulateur du DMP, authentification indirecte (certificat de structure).\n"
            f"Résultat attendu : {case.expected or 'non précisé'}"
            f"{' (' + case.return_code + ')' if case.return_code else ''}\n"
            f"Constaté : {outcome.account}\n"
            f"Résultat : {'conforme' if outcome.passed else 'NON conforme'} ; {frames} échange(s) dans ce dossier "
            "(requête et réponse brutes, index.csv).\n")


def _results(outcomes: list[Outcome], path: Path) -> None:
    """``resultats.csv`` and ``resultats.xlsx``: the same table, in the test book's columns."""
    rows = [RESULT_COLUMNS]
    for o in outcomes:
        result = ("OK" if o.passed else "KO") if o.played else "Non joué"
        rows.append([o.case.transaction_key, o.case.code, " ".join(o.case.title.split()), o.case.expected,
                     o.case.return_code, o.account, result])
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)
    write_xlsx(path.with_suffix(".xlsx"), "Phase 2 - Tests", rows)


def run_cases(args: argparse.Namespace, config: Config, perimeter: Perimeter) -> int:
    reference = find_reference(config.homologation.reference_dir, marker="cnda")
    if reference is None:
        book_dir(config.homologation.reference_dir)  # raises the French "book missing" error
        return 2
    # Without --only: every case of the perimeter's plan (those the agent cannot play are listed "Non joué").
    codes = list(args.only) if args.only else [t.code for t in plan(load_book(reference / "cnda" / "dmp"),
                                                                    perimeter).tests]
    outcomes = asyncio.run(play_cases(codes, reference, Path(args.output)))
    for o in outcomes:
        state = ("conforme" if o.passed else "NON conforme") if o.played else "non joué"
        print(f"{o.case.code}\t{state}\t{o.account[:110]}")
    print(f"Preuves écrites dans {args.output} (un dossier par cas, resultats.csv).")
    return 0 if all(o.passed for o in outcomes if o.played) else 1
