"""Frames written as files for the CNDA: one request file and one response file per exchange.

Files are named by time and transaction so that they sort in the order they were exchanged:
``20261207T143012.123456Z_TD2.1_0007_requete.xml`` and ``..._reponse.xml``; an ``index.csv`` lists every exchange
(time, service, transaction, test code, outcome, files). Export is a deliberate act of the publisher: the files
hold patient data (the CNDA's test patients on its platform).
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.store import frames as repo
from agent.store.crypto import ContentCipher

INDEX_COLUMNS = ["horodatage", "service", "transaction", "code_test", "resultat", "requete", "reponse"]


@dataclass(frozen=True, slots=True)
class Exported:
    count: int
    files: list[Path]


def _extension(data: bytes, content_type: str) -> str:
    head = data.lstrip()[:1]
    if head == b"<":
        return "xml"
    if "multipart" in content_type or data.startswith(b"--"):
        return "mime"  # MTOM: the XML part and its attachments, as sent
    return "txt"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def file_stem(row: repo.FrameRow) -> str:
    stamp = datetime.fromtimestamp(row.at, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}_{_safe(row.transaction)}_{row.seq:04d}"


def write_frames(rows: Iterable[repo.FrameRow], out: Path) -> Exported:
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    count = 0
    with (out / "index.csv").open("w", encoding="utf-8", newline="") as index_file:
        index = csv.writer(index_file, delimiter=";")
        index.writerow(INDEX_COLUMNS)
        for row in rows:
            stem = file_stem(row)
            names = ["", ""]
            for i, (kind, data, ctype) in enumerate((("requete", row.request, row.request_type),
                                                     ("reponse", row.response, row.response_type))):
                if data is None:
                    continue
                path = out / f"{stem}_{kind}.{_extension(data, ctype)}"
                path.write_bytes(data)
                files.append(path)
                names[i] = path.name
            index.writerow([row.at_text, row.service, row.transaction, row.test_code, row.outcome, *names])
            count += 1
    return Exported(count, files)


def export_frames(conn: sqlite3.Connection, cipher: ContentCipher, out: Path, *, since: float | None = None,
                  until: float | None = None, test_code: str | None = None) -> Exported:
    return write_frames(repo.iter_frames(conn, cipher, since=since, until=until, test_code=test_code), out)
