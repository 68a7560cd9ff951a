"""The DMP's parameters file: downloaded from its configured URL (HTTPS, redirects followed), kept on disk, refreshed
on a schedule, and read by the rules (``agent.domain.dmp_params``).

What is public about the file (EX_GEN-1540, EX_GEN-1222, EX_GEN-1550, EX_2.1-1050 of the CNDA test book) is its
purpose, its refresh rule (at least weekly), that its URL may redirect, and three parameter names:
``age-majorite``, ``fonctions-gestion-mineurs``, ``cumul-invisible_patient-masque_ps``. DevBox's integrator notes
say it is "un document XML" (their default URL: https://www.dmp.fr/web/dmp/documents/param-lps). Its structure and
the production flag's name are NOT public (the GIE integration guide SEL-MP-037 § 3.1.1 is not). So the reader is
lenient and the names are configuration (``[dmp] params_name_*``):
- XML: a parameter is an element named like it (``<age-majorite>18</age-majorite>``), or an element whose
  ``nom``/``name``/``cle``/``key``/``id``/``code`` attribute names it, its value in ``valeur``/``value`` or its
  text (``<parametre nom="age-majorite" valeur="18"/>``);
- otherwise text lines ``name=value`` or ``name: value`` (a properties file).
A file in which no known name appears, or with a value that cannot be read, is refused: the last good copy stays in
force and ``/v1/status`` says why.

Scheduling follows the agent's way (the queue's: the due time is data, re-read after every wake): a task sleeps at
most an hour at a time and downloads when the copy on disk is older than ``params_refresh_hours``; sleep, restarts
and clock changes lose nothing, and a failed download is tried again every ``params_retry_minutes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from lxml import etree

from agent.clock import Clock
from agent.domain.dmp_params import DmpParameters, ParameterNames, from_values
from agent.errors import PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.lifecycle import Lifecycle, cancel_and_wait
from agent.logs import get_logger
from agent.xml.safe import UnsafeXml, parse

log = get_logger("dmp")

MAX_FILE_BYTES = 1024 * 1024
MAX_REDIRECTS = 10
_NAME_ATTRIBUTES = ("nom", "name", "cle", "key", "id", "code")
_VALUE_ATTRIBUTES = ("valeur", "value", "val")
CACHE_NAME = "dmp-parameters"


def read_values(data: bytes) -> dict[str, str]:
    """Every ``name -> raw value`` the file carries (see the module's docstring for the shapes read)."""
    text = data.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<"):
        root = parse(text, what="fichier des paramètres du DMP", max_bytes=MAX_FILE_BYTES)
        values: dict[str, str] = {}
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            named = next((el.get(a) for a in _NAME_ATTRIBUTES if el.get(a)), None)
            value = next((el.get(a) for a in _VALUE_ATTRIBUTES if el.get(a) is not None), None)
            if named is not None:
                values.setdefault(named.strip(), value if value is not None else (el.text or "").strip())
            elif len(el) == 0 and el is not root:
                values.setdefault(etree.QName(el).localname,
                                  value if value is not None else (el.text or "").strip())
        return values
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError("fichier des paramètres illisible (ni XML ni texte UTF-8)") from exc
    values = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";", "!")):
            continue
        for sep in ("=", ":"):
            if sep in line:
                name, _, value = line.partition(sep)
                values.setdefault(name.strip(), value.strip())
                break
    return values


def read_file(data: bytes, names: ParameterNames, fallback: DmpParameters) -> DmpParameters:
    """The parameters of a downloaded file; ValueError (French) when it is not a readable parameters file."""
    try:
        values = read_values(data)
    except UnsafeXml as exc:
        raise ValueError(exc.message) from exc
    return from_values(values, names, fallback)


@dataclass(frozen=True, slots=True)
class ParamsSettings:
    url: str  # empty: never downloaded; the configuration's values are used
    cache_dir: Path
    names: ParameterNames
    fallback: DmpParameters  # the configuration's values, until the file is read once
    refresh_hours: float = 24.0
    retry_minutes: float = 30.0
    ca_file: str = ""  # empty: the system store (the real file is on a public web server)
    timeout_seconds: float = 30.0


class DmpParamsPart(Lifecycle):
    """The parameters in force (``current()``), their download and their copy on disk."""

    def __init__(self, settings: ParamsSettings, clock: Clock, *,
                 ssl_context: ssl.SSLContext | None = None, on_change: Callable[[DmpParameters], object] | None = None
                 ) -> None:
        self.settings = settings
        self.clock = clock
        self._ssl = ssl_context
        self._on_change = on_change
        self._current = settings.fallback
        self.last_error: str = ""
        self.last_attempt: dt.datetime | None = None
        self.final_url: str = ""
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.downloads = 0

    # --- what the rules read ----------------------------------------------------------------------------

    def current(self) -> DmpParameters:
        return self._current

    @property
    def _data_path(self) -> Path:
        return self.settings.cache_dir / f"{CACHE_NAME}.bin"

    @property
    def _meta_path(self) -> Path:
        return self.settings.cache_dir / f"{CACHE_NAME}.json"

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.load()
        if self.settings.url:
            self._task = asyncio.create_task(self._run(), name="dmp-params")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def load(self) -> None:
        """The copy kept on disk: a restart without network still has the last file read."""
        try:
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
            data = self._data_path.read_bytes()
        except (OSError, ValueError):
            return
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            log.warning("paramètres du DMP : copie locale incohérente, ignorée")
            return
        try:
            params = read_file(data, self.settings.names, self.settings.fallback)
            fetched = dt.datetime.fromisoformat(str(meta["fetched_at"]))
        except (ValueError, KeyError) as exc:
            log.warning("paramètres du DMP : copie locale illisible (%s)", exc)
            return
        self.final_url = str(meta.get("final_url", ""))
        self._set(replace(params, source="cache", fetched_at=fetched))

    def _set(self, params: DmpParameters) -> None:
        changed = params.as_dict() != self._current.as_dict()
        self._current = params
        if changed and self._on_change is not None:
            self._on_change(params)

    # --- schedule ---------------------------------------------------------------------------------------

    def due_in(self) -> float:
        """Seconds until the next download is due (0: now)."""
        now = self.clock.now()
        fetched = self._current.fetched_at
        due = fetched + dt.timedelta(hours=self.settings.refresh_hours) if fetched is not None else now
        if self.last_error and self.last_attempt is not None:  # a failed download: again after a pause
            due = max(due, self.last_attempt + dt.timedelta(minutes=self.settings.retry_minutes))
        return max(0.0, (due - now).total_seconds())

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            wait = self.due_in()
            if wait <= 0:
                try:
                    await self.refresh()
                except (TransientRemoteError, PermanentRemoteError) as exc:
                    log.warning("paramètres du DMP non téléchargés : %s", exc.message)
                except Exception:  # never a hot loop: the next try waits params_retry_minutes like any failure
                    log.exception("paramètres du DMP : erreur inattendue")
                    self.last_attempt, self.last_error = self.clock.now(), "erreur interne de l'agent"
                continue
            self._wake.clear()
            # At most an hour at a time: the due time is re-read, so a sleeping laptop or a clock change is seen.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 3600.0)):
                    await self._wake.wait()

    # --- download ---------------------------------------------------------------------------------------

    async def refresh(self) -> DmpParameters:
        """Download the file now (redirects followed, HTTPS only), read it, keep it on disk. On failure the
        parameters in force stay and the error is raised and kept for /v1/status."""
        if not self.settings.url:
            raise PermanentRemoteError("Aucune adresse du fichier des paramètres du DMP n'est configurée "
                                       "([dmp] params_url).", service="dmp", code="dmp_params_not_configured")
        self.last_attempt = self.clock.now()
        try:
            data, final_url = await self._download()
            params = read_file(data, self.settings.names, self.settings.fallback)
        except ValueError as exc:
            self.last_error = f"fichier des paramètres refusé : {exc}"
            raise PermanentRemoteError(f"Fichier des paramètres du DMP refusé : {exc}", service="dmp",
                                       code="dmp_params_invalid") from exc
        except (TransientRemoteError, PermanentRemoteError) as exc:
            self.last_error = exc.message
            raise
        now = self.clock.now()
        self.final_url, self.last_error = final_url, ""
        try:
            self._store(data, final_url, now)
        except OSError as exc:  # in force all the same; only a restart without network would miss it
            log.warning("paramètres du DMP : copie locale non écrite (%s)", exc.strerror)
            self.last_error = f"copie locale non écrite : {exc.strerror}"
        self.downloads += 1
        self._set(replace(params, source="dmp", fetched_at=now))
        log.info("paramètres du DMP mis à jour")
        return self._current

    async def _download(self) -> tuple[bytes, str]:
        url = self.settings.url
        if not url.lower().startswith("https://"):
            raise PermanentRemoteError("L'adresse du fichier des paramètres du DMP doit être en https.",
                                       service="dmp", code="dmp_params_not_https")
        ctx = self._ssl or ssl.create_default_context(cafile=self.settings.ca_file or None)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=ctx)) as session, \
                    session.get(url, allow_redirects=True, max_redirects=MAX_REDIRECTS,
                                headers={"Accept": "application/xml, text/xml, text/plain, */*"}) as resp:
                    final = str(resp.url)
                    if any(str(h.url).lower().startswith("http://") for h in resp.history) or \
                            not final.lower().startswith("https://"):
                        raise PermanentRemoteError("Le fichier des paramètres du DMP a été redirigé hors de "
                                                   "https : refusé.", service="dmp", code="dmp_params_not_https")
                    if resp.status >= 500:
                        raise TransientRemoteError(f"Fichier des paramètres du DMP indisponible (HTTP "
                                                   f"{resp.status}).", service="dmp", code="dmp_params_unavailable",
                                                   http_status=resp.status)
                    if resp.status != 200:
                        raise TransientRemoteError(f"Fichier des paramètres du DMP refusé par le serveur (HTTP "
                                                   f"{resp.status}).", service="dmp", code="dmp_params_unavailable",
                                                   http_status=resp.status)
                    data = await resp.content.read(MAX_FILE_BYTES + 1)
        except aiohttp.TooManyRedirects as exc:
            raise TransientRemoteError("Trop de redirections pour le fichier des paramètres du DMP.",
                                       service="dmp", code="dmp_params_unavailable") from exc
        except TimeoutError as exc:
            raise TransientRemoteError("Le fichier des paramètres du DMP n'a pas été reçu à temps.", service="dmp",
                                       code="dmp_params_unavailable") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ServiceUnreachable("Serveur du fichier des paramètres du DMP injoignable.", service="dmp",
                                     code="dmp_params_unavailable", maybe_delivered=False) from exc
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"fichier trop volumineux (plus de {MAX_FILE_BYTES} octets)")
        return data, final

    def _store(self, data: bytes, final_url: str, now: dt.datetime) -> None:
        """Written beside, then renamed over: a crash mid-write leaves the previous copy whole."""
        self.settings.cache_dir.mkdir(parents=True, exist_ok=True)
        meta = {"fetched_at": now.isoformat(), "url": self.settings.url, "final_url": final_url,
                "sha256": hashlib.sha256(data).hexdigest()}
        for path, content in ((self._data_path, data), (self._meta_path, json.dumps(meta).encode())):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)

    # --- status -----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``dmp_parameters`` of /v1/status: where the values come from, how old they are, the last error."""
        current = self._current
        age = (self.clock.now() - current.fetched_at).total_seconds() / 3600 if current.fetched_at else None
        return {"url": self.settings.url, "final_url": self.final_url or None, "source": current.source,
                "fetched_at": current.fetched_at.isoformat().replace("+00:00", "Z") if current.fetched_at else None,
                "age_hours": round(age, 1) if age is not None else None,
                "stale": bool(self.settings.url) and (age is None or age > STALE_HOURS),
                "last_error": self.last_error or None, "values": current.as_dict()}


STALE_HOURS = 7 * 24  # EX_GEN-1540: at least once a week


def cached_status(cache_dir: Path, now: dt.datetime) -> Mapping[str, Any] | None:
    """What the copy on disk says (for ``relais doctor``, agent running or not): fetched_at and age in hours."""
    try:
        meta = json.loads((cache_dir / f"{CACHE_NAME}.json").read_text(encoding="utf-8"))
        fetched = dt.datetime.fromisoformat(str(meta["fetched_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"fetched_at": fetched, "age_hours": (now - fetched).total_seconds() / 3600,
            "final_url": meta.get("final_url", "")}
