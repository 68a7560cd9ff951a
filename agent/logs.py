"""Logging: a rotating file in the log directory and stderr, with a TRAFFIC level below DEBUG.

What must never reach a log: a patient's name, NIR or INS, a PIN, a document's content. The code does not log
them; as a second line of defence, a filter masks anything that looks like a NIR (13 to 15 digits, with 2A/2B)
in every record. Protocol dumps go to TRAFFIC only, and enabling TRAFFIC warns loudly because such dumps can
hold patient data.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
import sys
from pathlib import Path

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

LOGGER_NAME = "relais"
# Libraries that log what they sign or parse: signxml writes the canonicalised VIHF (which holds the patient's INS)
# at DEBUG. They are held at WARNING whoever configures the root logger (a host application, pytest's caplog).
QUIET_LIBRARIES = ("signxml", "saxonche", "xmlsec")
for _library in QUIET_LIBRARIES:
    logging.getLogger(_library).setLevel(logging.WARNING)
_NIR_LIKE = re.compile(r"(?<![\dA-Za-z])[12378]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2A|2B)\s?\d{3}\s?\d{3}(?:\s?\d{2})?(?!\d)")


def redact(text: str) -> str:
    """``text`` with NIR-shaped numbers masked: for messages that leave the process (events, logs)."""
    return _NIR_LIKE.sub("[NIR masqué]", text)


class RedactingFilter(logging.Filter):
    """Masks NIR-shaped numbers in the final message; a guard, not a licence to log patient data."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= TRAFFIC:
            return True
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str, log_dir: Path | None, *, max_bytes: int = 5_000_000, backups: int = 5) -> None:
    """stderr and the rotating file, written by one background thread: a request that logs only puts the record
    (masked once, here) on a queue; formatting and the two writes happen off the event loop."""
    global _listener
    # A full or read-only disk makes the log file refuse writes: the agent keeps running (and says so in its
    # status) instead of printing a traceback for every line it could not write.
    logging.raiseExceptions = False
    root = logging.getLogger(LOGGER_NAME)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None
    numeric = TRAFFIC if level == "TRAFFIC" else logging.getLevelName(level)
    root.setLevel(numeric)
    root.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_dir / "relais.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(fmt)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = logging.handlers.QueueHandler(records)
    front.addFilter(RedactingFilter())  # before the record leaves the caller: the one place it is masked
    root.addHandler(front)
    _listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    _listener.start()
    if numeric == TRAFFIC:
        root.warning(
            "niveau de journal TRAFFIC actif : les échanges protocolaires complets sont écrits et peuvent contenir "
            "des données de santé ; à désactiver dès la fin du diagnostic"
        )
        flush_logs()


def flush_logs() -> None:
    """Write out every record logged so far (at exit, and for tests reading the files)."""
    if _listener is not None:
        _listener.stop()  # drains the queue, then joins the writer thread
        for handler in _listener.handlers:
            handler.flush()
        _listener.start()


def _stop_at_exit() -> None:
    if _listener is not None:
        _listener.stop()


atexit.register(_stop_at_exit)
