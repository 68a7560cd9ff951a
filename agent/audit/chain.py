"""The hash chain of the traces: what each row's hash covers, verification, and the export formats.

Each row's hash is SHA-256 over a canonical JSON array of its fields and the previous row's hash (64 zeros for
the first row). Editing, inserting or deleting a row breaks the link at that row or the next one, and
``verify`` names the first row whose stored hash or link does not match. Each hash is also authenticated
(``mac``: HMAC-SHA256 under a key sealed with the store's master key), so someone who edits a row and recomputes
every hash after it is still caught at that row, unless they also hold the master key. Removing the last rows
leaves a shorter valid chain: compare the reported head (count and hash) with one noted earlier (an export
keeps it).

Pure: no SQLite, no clock.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.store.traces import COLUMNS, GENESIS, StoredTrace


def canonical(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def link_hash(*, seq: int, at: str, action: str, actor_rpps: str | None, workstation: str, client: str,
              mode: str, ins: str | None, object: str | None, outcome: str, details: str, prev_hash: str) -> str:
    payload = json.dumps(
        [seq, at, action, actor_rpps, workstation, client, mode, ins, object, outcome, details, prev_hash],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def authenticate(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def seal(*, seq: int, prev_hash: str, at: str, action: str, actor_rpps: str | None, workstation: str,
         client: str, mode: str, ins: str | None, object: str | None, outcome: str,
         details: dict[str, Any], key: bytes | None = None) -> StoredTrace:
    text = canonical(details)
    digest = link_hash(seq=seq, at=at, action=action, actor_rpps=actor_rpps, workstation=workstation,
                       client=client, mode=mode, ins=ins, object=object, outcome=outcome, details=text,
                       prev_hash=prev_hash)
    return StoredTrace(seq, at, action, actor_rpps, workstation, client, mode, ins, object, outcome, text,
                       prev_hash, digest, authenticate(key, digest) if key else "")


def expected_hash(row: StoredTrace) -> str:
    return link_hash(seq=row.seq, at=row.at, action=row.action, actor_rpps=row.actor_rpps,
                     workstation=row.workstation, client=row.client, mode=row.mode, ins=row.ins, object=row.object,
                     outcome=row.outcome, details=row.details, prev_hash=row.prev_hash)


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    count: int  # rows checked (up to and including the broken one)
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""  # French
    authenticated: bool = True  # False when the key was not available: only the hashes were checked

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "head": {"seq": self.head_seq, "hash": self.head_hash},
                "broken_seq": self.broken_seq, "problem": self.problem or None,
                "authenticated": self.authenticated}


def verify(rows: Iterable[StoredTrace], key: bytes | None = None) -> Verification:
    """Walk the chain in order; stop at the first row that does not hold. Without ``key`` only the hashes and
    links are checked (``authenticated`` is then False)."""
    prev_hash = GENESIS
    prev_seq = 0
    count = 0
    for row in rows:
        count += 1
        if not hmac.compare_digest(row.prev_hash, prev_hash):
            what = ("une ligne précédente a été supprimée ou modifiée" if row.seq != prev_seq + 1 else
                    "le lien avec la ligne précédente est rompu")
            return Verification(False, count, prev_seq, prev_hash, row.seq,
                                f"Trace n° {row.seq} : {what}.")
        if not hmac.compare_digest(expected_hash(row), row.hash):
            return Verification(False, count, prev_seq, prev_hash, row.seq,
                                f"Trace n° {row.seq} : son contenu a été modifié après son écriture.",
                                key is not None)
        if key is not None and not hmac.compare_digest(authenticate(key, row.hash), row.mac):
            return Verification(False, count, prev_seq, prev_hash, row.seq,
                                f"Trace n° {row.seq} : son empreinte n'a pas été écrite par cet agent "
                                "(chaîne recalculée après modification).", True)
        prev_hash, prev_seq = row.hash, row.seq
    return Verification(True, count, prev_seq, prev_hash, authenticated=key is not None)


def as_json(row: StoredTrace) -> dict[str, Any]:
    return {
        "seq": row.seq, "at": row.at, "action": row.action,
        "actor": {"rpps": row.actor_rpps, "workstation": row.workstation, "client": row.client, "mode": row.mode},
        "ins": row.ins, "object": row.object, "outcome": row.outcome, "details": json.loads(row.details),
        "prev_hash": row.prev_hash, "hash": row.hash, "mac": row.mac,
    }


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting like a formula: neutralise it (OWASP CSV injection).
    return "'" + text if text.startswith(_FORMULA) else text


def csv_header() -> str:
    return _csv_line(COLUMNS)


def csv_row(row: StoredTrace) -> str:
    return _csv_line([_cell(getattr(row, name)) for name in COLUMNS])


def _csv_line(values: Iterable[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()
