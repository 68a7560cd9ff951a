"""`relais traces verify` and `relais traces export`: read the trace chain straight from the store.

Both open the database read-only, so they work whether the agent runs or not (WAL lets readers in beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from agent.audit import chain
from agent.audit.recorder import export_rows, verify_conn
from agent.clock import parse_rfc3339, rfc3339
from agent.config import Config
from agent.domain.ins import key_is_valid
from agent.errors import InvalidInput, NotFound, RelaisError
from agent.store.crypto import ContentCipher
from agent.store.db import connect
from agent.store.masterkey import load_master_key
from agent.store.traces import TraceFilter


def run_traces(args: argparse.Namespace, config: Config) -> int:
    path = config.data_dir / "relais.db"
    if not path.exists():
        raise NotFound(f"Aucune base Relais dans {config.data_dir}.", code="store_absent")
    conn = connect(path, readonly=True)
    try:
        if args.traces_command == "verify":
            result = verify_conn(conn, _cipher(config))
            if result.ok:
                print(f"Chaîne des traces intègre : {result.count} trace(s), dernière n° {result.head_seq}, "
                      f"empreinte {result.head_hash}.")
                if not result.authenticated:
                    print("Attention : clé maîtresse indisponible, seules les empreintes ont été vérifiées.",
                          file=sys.stderr)
                return 0
            location = f" à la trace n° {result.broken_seq}" if result.broken_seq is not None else ""
            print(f"Chaîne des traces ROMPUE{location} : {result.problem}", file=sys.stderr)
            print(f"Dernière trace intègre : n° {result.head_seq} (empreinte {result.head_hash}).", file=sys.stderr)
            return 1
        where = _filter(args)
        with _output(args.output) as out:
            count = 0
            if args.format == "csv":
                out.write(chain.csv_header())
                for row in export_rows(conn, where):
                    out.write(chain.csv_row(row))
                    count += 1
            else:
                # One JSON document, written as it is read: large periods never sit in memory.
                out.write('{"items": [')
                for row in export_rows(conn, where):
                    out.write((",\n" if count else "\n") + json.dumps(chain.as_json(row), ensure_ascii=False))
                    count += 1
                out.write("\n]}\n")
        if args.output:
            print(f"{count} trace(s) exportée(s) dans {args.output}.", file=sys.stderr)
        return 0
    finally:
        conn.close()


def _cipher(config: Config) -> ContentCipher | None:
    """The store's cipher, to check the traces' MACs; None (hashes only) when the master key cannot be had."""
    try:
        return ContentCipher(load_master_key(config.data_dir, config.store.master_key).key)
    except RelaisError:
        return None


def _date(text: str | None, name: str) -> str | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            return rfc3339(datetime.fromisoformat(text).replace(tzinfo=UTC))
        return rfc3339(parse_rfc3339(text))
    except ValueError:
        raise InvalidInput(f"--{name} : date attendue en RFC 3339 ou AAAA-MM-JJ ({text!r}).") from None


def _filter(args: argparse.Namespace) -> TraceFilter:
    ins = args.ins.upper() if args.ins else None
    if ins is not None and not key_is_valid(ins):
        raise InvalidInput(f"--ins : INS invalide ({len(ins)} caractères, clé fausse ou format inconnu).")
    return TraceFilter(since=_date(args.since, "from"), until=_date(args.until, "to"), ins=ins,
                       actor=args.actor or None, action=args.action or None)


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if not path:
        yield sys.stdout
        return
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        yield out
