"""`relais homologation plan|declarations|run`: the CNDA's DMP test book for this publisher's perimeter.

``plan`` filters the book (prerequisites, tests, declarations) as the CNDA's plan would; ``declarations`` says
what Relais answers to each EX_/REC_ requirement; ``run`` plays the cases the agent can play on its own against
the simulator (or the configured platform) and writes the CNDA's folder tree (``agent/cli/homologation_run.py``).
``--service insi``: the same for the CNDA's INSi cases (``agent/cli/homologation_insi.py``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

from agent.cli.commands import load
from agent.config import Config
from agent.errors import InvalidInput, NotFound
from agent.homologation.book import Declaration, Perimeter, book_dir, load_book, plan
from agent.homologation.declarations import answers
from agent.reference import find_reference

PLAN_COLUMNS = ["Phase", "Transaction", "Code", "Libellé", "Authentification", "Profil DMP-C", "Mode",
                "Autres filtrages", "Résultat attendu", "Code retour", "Éléments à fournir"]
DECLARATION_COLUMNS = ["Code", "Transaction", "Type", "Exigence/Recommandation", "Délégable",
                       "Réponse de Relais", "Mis en œuvre par"]


def _perimeter(args: argparse.Namespace) -> Perimeter:
    options = [o for value in args.option or [] for o in value.split(";")]
    return Perimeter.parse(args.profile, args.auth, args.mode or "", options)


def _one_line(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_homologation(args: argparse.Namespace) -> int:
    config = load(args)
    if getattr(args, "service", "dmp") == "insi":
        return _insi(args, config)
    if args.homologation_command == "run":
        from agent.cli.homologation_run import run_cases

        return int(run_cases(args, config, _perimeter(args)))
    book = load_book(book_dir(config.homologation.reference_dir))
    if args.homologation_command == "declarations":
        return _declarations(args, book.declarations if args.all else
                             plan(book, _perimeter(args)).declarations)
    result = plan(book, _perimeter(args))
    if args.csv:
        with Path(args.csv).open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(PLAN_COLUMNS)
            for pre in result.prerequisites:
                writer.writerow(["Prérequis", pre.transaction, pre.code, pre.instructions, pre.auth, pre.profile,
                                 "", pre.specificity, "", "", ""])
            for t in result.tests:
                writer.writerow(["Test", t.transaction_key, t.code, t.title, t.auth, t.profile, t.mode, t.raw_tags,
                                 t.expected, t.return_code, t.proofs])
            for d in result.declarations:
                writer.writerow(["Déclaration", d.transaction, d.code, d.instructions, d.auth, d.declaration_type,
                                 "", " ".join(d.tags), "", "", d.proofs])
        print(f"Plan écrit dans {args.csv}.", file=sys.stderr)
    per = result.perimeter
    print(f"Périmètre : profil(s) {', '.join(sorted(per.profiles))} ; authentification "
          f"{', '.join(sorted(per.auths))} ; modes {', '.join(sorted(per.modes)) or 'normal'} ; options "
          f"{', '.join(sorted(per.options)) or 'aucune'}")
    print(f"\nPrérequis (phase 1) : {len(result.prerequisites)}")
    for pre in result.prerequisites:
        print(f"  {pre.code}\t{_one_line(pre.instructions)}")
    print(f"\nTests (phase 2) : {len(result.tests)}")
    for t in result.tests:
        expected = f" → {t.expected}" + (f" ({_one_line(t.return_code, 40)})" if t.return_code else "") \
            if t.expected else ""
        print(f"  {t.code}\t{t.transaction_key}\t{_one_line(t.title, 70)}{expected}")
    print(f"\nDéclarations : {len(result.declarations)} (voir « relais homologation declarations »)")
    return 0


def _insi(args: argparse.Namespace, config: Config) -> int:
    """``plan --service insi`` lists the CNDA's INSi cases and how the run treats each; ``run --service insi``
    plays them (``agent/cli/homologation_insi.py``)."""
    from agent.cli.homologation_insi import plan_rows, run_insi

    configured = config.homologation.platform == "configured"
    if args.homologation_command == "run":
        reference = find_reference(config.homologation.reference_dir, marker="cnda")
        if reference is None or not (reference / "cnda" / "insi").is_dir():
            raise NotFound("Matériel de test INSi du CNDA introuvable : indiquez le dossier de référence "
                           "([homologation] reference_dir ou RELAIS_REFERENCE, contenant cnda/insi/).",
                           code="cnda_book_missing")
        return run_insi(list(args.only) if args.only else None, reference, Path(args.output), config)
    if args.homologation_command != "plan":
        raise InvalidInput("« declarations » porte sur le cahier du DMP (pas de --service insi).",
                           code="invalid_input")
    rows = plan_rows(configured)
    if args.csv:
        with Path(args.csv).open("w", encoding="utf-8", newline="") as out:
            csv.writer(out, delimiter=";").writerows(rows)
        print(f"Plan écrit dans {args.csv}.", file=sys.stderr)
    print(f"Cas INSi du CNDA : {len(rows) - 1} (plateforme : "
          f"{'configurée' if configured else 'simulateur'})")
    for row in rows[1:]:
        print(f"  {row[1]}\t{row[0]}\t{_one_line(row[2], 60)} → {_one_line(row[5], 70)}")
    return 0


def _declarations(args: argparse.Namespace, declarations: list[Declaration]) -> int:
    rows = answers(declarations)
    if args.csv:
        with Path(args.csv).open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(DECLARATION_COLUMNS)
            for a in rows:
                d = a.declaration
                writer.writerow([d.code, d.transaction, d.declaration_type, d.kind, d.delegable, a.answer,
                                 a.implemented_by])
        print(f"Déclarations écrites dans {args.csv}.", file=sys.stderr)
    supported = sum(1 for a in rows if a.supported)
    print(f"{len(rows)} déclaration(s), dont {supported} prise(s) en charge par Relais.")
    for a in rows:
        where = f" [{a.implemented_by}]" if a.implemented_by else ""
        print(f"  {a.declaration.code}\t{a.answer}{where}")
    return 0


def add_parser(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Declare `homologation plan|declarations|run` (``add`` is the CLI's subcommand factory)."""
    from agent.cli import _common

    homologation = add("homologation", "homologation CNDA du DMP et de l'INSi : plan de tests, déclarations, jeu "
                                       "des cas")
    sub = homologation.add_subparsers(dest="homologation_command", required=True, metavar="ACTION")

    def perimeter(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument("--profile", required=required, default="alimentation,consultation",
                       help="profils DMP-C : alimentation, consultation (séparés par des virgules)")
        p.add_argument("--auth", default="indirecte",
                       help="authentifications : indirecte, directe, psc, air (défaut : indirecte)")
        p.add_argument("--mode", default="", help="modes particuliers : centre-15, bdg, connexion-secrete")
        p.add_argument("--option", action="append", metavar="FILTRE",
                       help="option déclarée de la colonne « Autres filtrages » (ex. « médecin traitant », INSI, "
                            "LGC, VAC, STRUCT, IMAGERIE) ; répétable, ou séparées par « ; »")
        p.add_argument("--csv", metavar="FICHIER", help="écrire aussi le résultat en CSV (séparateur « ; »)")
        p.add_argument("--service", choices=("dmp", "insi"), default="dmp",
                       help="cahier joué : dmp (défaut) ou insi (cas INSi du CNDA)")

    plan_parser = sub.add_parser("plan", help="tests du cahier du CNDA applicables à un périmètre")
    _common(plan_parser, top=False)
    perimeter(plan_parser, required=False)
    declarations = sub.add_parser("declarations", help="réponse de Relais à chaque exigence EX_/REC_")
    _common(declarations, top=False)
    perimeter(declarations, required=False)
    declarations.add_argument("--all", action="store_true", help="toutes les déclarations, sans filtre")
    run = sub.add_parser("run", help="jouer les cas que l'agent peut jouer seul, contre le simulateur ou la "
                                     "plateforme configurée ([homologation] platform)")
    _common(run, top=False)
    perimeter(run, required=False)
    run.add_argument("--only", nargs="+", metavar="CODE", help="codes de test à jouer (défaut : ceux du plan)")
    run.add_argument("--output", metavar="DOSSIER", required=True, help="dossier des preuves (arborescence CNDA)")
