"""The CI-SIS kit on a workstation: install it from a release archive of the ANS TestContenuCDA repository (.zip,
.tar.gz) or from a folder into the agent's data folder, and say what is installed.

    install_kit(source, data_dir, version=None) -> KitManifest
    installed_kit(data_dir) -> KitManifest | None
    kit_status(data_dir, ...) -> KitStatus

Layout: ``<data_dir>/reference/ci-sis/`` (the kit's ``infrastructure/``, ``schematrons/``, ``jeuxDeValeurs/`` and,
when present, ``ExemplesCDA/``) and ``<data_dir>/reference/ci-sis.json`` (version, source, SHA-256 of the archive
and of the installed tree, date). ``<data_dir>/reference`` is what ``agent.reference.find_reference`` calls the
installed kit.

An archive is untrusted: a member whose path leaves the archive (absolute, ``..``), a link whose target leaves it,
a device or fifo, too many members or too many bytes refuse the whole archive before anything is written in place;
the new kit is extracted beside the old one and swapped in only once it is complete, so a failed install leaves the
previous kit as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from agent.cda.validation import CdaValidator
from agent.errors import InvalidInput, NotFound, RelaisError

INSTALL_DIR = "reference"  # under the data folder; holds ci-sis/ (the find_reference marker) and its manifest
KIT_DIR = "ci-sis"
MANIFEST = "ci-sis.json"
# What a TestContenuCDA tree must hold for the agent to validate with it.
REQUIRED = (
    "infrastructure/cda/CDA_extended.xsd",
    "schematrons/profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch",
    "schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch",
    "jeuxDeValeurs",
)
COPIED = ("infrastructure", "schematrons", "jeuxDeValeurs", "ExemplesCDA", "README.md")
ABSENT = "absent du kit"  # a volet's schematron the kit does not ship: documents of that volet are refused
MAX_MEMBERS = 50_000
MAX_BYTES = 1024 * 1024 * 1024  # uncompressed; the kit is ~25 MiB, its release archive with the tool ~100 MiB


@dataclass(frozen=True)
class KitManifest:
    version: str
    source: str
    source_sha256: str
    tree_sha256: str
    installed_at: str
    files: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KitStatus:
    installed: KitManifest | None
    path: Path
    intact: bool | None = None  # the tree's checksum still matches the manifest's
    compiled: dict[str, str] = field(default_factory=dict)  # schematron -> "ok" or the French failure

    def as_dict(self) -> dict[str, Any]:
        return {"installed": self.installed.as_dict() if self.installed else None, "path": str(self.path),
                "intact": self.intact, "schematrons": dict(self.compiled)}


def kit_root(data_dir: Path) -> Path:
    """The installed kit's reference folder (holding ``ci-sis/``), whether or not a kit is installed."""
    return data_dir / INSTALL_DIR


def installed_kit(data_dir: Path) -> KitManifest | None:
    path = kit_root(data_dir) / MANIFEST
    if not (kit_root(data_dir) / KIT_DIR).is_dir() or not path.is_file():
        return None
    try:
        return KitManifest(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"Manifeste du kit CI-SIS illisible ({path}) : réinstallez le kit (relais kit install).",
                           code="kit_manifest_invalid") from exc


def install_kit(source: Path, data_dir: Path, *, version: str | None = None, now: datetime) -> KitManifest:
    """Install the kit found in ``source`` (archive or folder); the manifest written. Raises ``InvalidInput`` (a
    French message) for an archive that is unsafe or not a TestContenuCDA kit, ``NotFound`` when absent."""
    if not source.exists():
        raise NotFound(f"Kit CI-SIS introuvable : {source}.", code="kit_source_missing")
    root = kit_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kit-", dir=root) as work:
        staging = Path(work) / "unpacked"
        if source.is_dir():
            _check_folder(source)
            tree = source
            source_sha = tree_digest(_kit_tree(source))
        else:
            source_sha = file_digest(source)
            _extract(source, staging)
            tree = staging
        kit = _kit_tree(tree)
        missing = [rel for rel in REQUIRED if not (kit / rel).exists()]
        if missing:
            raise InvalidInput(f"{source.name} n'est pas un kit CI-SIS (TestContenuCDA) : il y manque "
                               f"{', '.join(missing)}.", code="kit_incomplete")
        new = Path(work) / KIT_DIR
        new.mkdir()
        for name in COPIED:
            if (kit / name).is_dir():
                shutil.copytree(kit / name, new / name, symlinks=False)
            elif (kit / name).is_file():
                shutil.copy2(kit / name, new / name)
        files = sum(1 for _ in _files(new))
        manifest = KitManifest(version=version or _version_of(source, kit), source=str(source.resolve()),
                               source_sha256=source_sha, tree_sha256=tree_digest(new),
                               installed_at=now.isoformat(), files=files)
        target = root / KIT_DIR
        old = Path(work) / "previous"
        if target.exists():
            target.rename(old)
        try:
            new.rename(target)
        except OSError:
            if old.exists():
                old.rename(target)  # the previous kit back in place
            raise
        tmp_manifest = Path(work) / MANIFEST
        tmp_manifest.write_text(json.dumps(manifest.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        tmp_manifest.replace(root / MANIFEST)
    return manifest


def kit_status(data_dir: Path, *, verify: bool = True) -> KitStatus:
    """What is installed under the data folder and whether its files are still the installed ones."""
    manifest = installed_kit(data_dir)
    path = kit_root(data_dir) / KIT_DIR
    if manifest is None:
        return KitStatus(None, path)
    intact = tree_digest(path) == manifest.tree_sha256 if verify else None
    return KitStatus(manifest, path, intact)


# -- checksums --------------------------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and SHA-256, in path order: the same tree gives the same sum."""
    digest = hashlib.sha256()
    for path in sorted(_files(folder), key=lambda p: p.relative_to(folder).as_posix()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path


# -- sources ----------------------------------------------------------------------------------------------------
def _kit_tree(tree: Path) -> Path:
    """The folder holding the kit: the tree itself or its one top folder (a GitHub release archive's
    ``TestContenuCDA-3-0-<tag>/``), or a ``ci-sis`` folder inside (a reference folder)."""
    for candidate in (tree, tree / KIT_DIR):
        if (candidate / "schematrons").is_dir():
            return candidate
    children = [c for c in tree.iterdir() if c.is_dir()] if tree.is_dir() else []
    return _kit_tree(children[0]) if len(children) == 1 else tree


def _version_of(source: Path, kit: Path) -> str:
    """The release's name: its top folder's (``TestContenuCDA-3-0-<tag>``), else the archive's or folder's name."""
    if kit.name not in (KIT_DIR, "unpacked") and kit != source:
        return kit.name
    name = source.name
    for suffix in (".tar.gz", ".tgz", ".zip", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_folder(folder: Path) -> None:
    base = folder.resolve()
    for top, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(top) / name
            if path.is_symlink() and not path.resolve().is_relative_to(base):
                raise _unsafe(folder.name, f"le lien {path.relative_to(folder)} pointe hors du dossier")


def _unsafe(name: str, why: str) -> InvalidInput:
    return InvalidInput(f"Kit CI-SIS refusé : {why} ({name}). Rien n'a été installé.", code="kit_unsafe")


def _member_path(name: str, archive: str) -> PurePosixPath:
    """A member's path inside the archive, refused if it could be written outside it."""
    normal = name.replace("\\", "/")
    path = PurePosixPath(normal)
    if path.is_absolute() or (len(normal) > 1 and normal[1] == ":") or ".." in path.parts:
        raise _unsafe(archive, f"le chemin {name!r} sort de l'archive")
    return path


def _inside(link: PurePosixPath, target: str, archive: str) -> PurePosixPath:
    """A link's target resolved against the link's folder; refused if it leaves the archive."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise _unsafe(archive, f"le lien {str(link)!r} pointe hors de l'archive ({target})")
    resolved = posixpath.normpath(posixpath.join(str(link.parent), target.replace("\\", "/")))
    if resolved == ".." or resolved.startswith("../"):
        raise _unsafe(archive, f"le lien {str(link)!r} pointe hors de l'archive ({target})")
    return PurePosixPath(resolved)


def _extract(archive: Path, dest: Path) -> None:
    lower = archive.name.lower()
    if lower.endswith(".zip") or zipfile.is_zipfile(archive):
        _extract_zip(archive, dest)
    elif lower.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(archive):
        _extract_tar(archive, dest)
    else:
        raise InvalidInput(f"{archive.name} n'est ni une archive .zip ni .tar.gz ni un dossier.",
                           code="kit_not_archive")


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _limits(archive.name, len(members), sum(m.file_size for m in members))
            links: list[tuple[PurePosixPath, PurePosixPath]] = []
            for member in members:
                path = _member_path(member.filename, archive.name)
                mode = member.external_attr >> 16
                if stat.S_ISLNK(mode):
                    links.append((path, _inside(path, zf.read(member).decode("utf-8", "replace"), archive.name)))
                elif member.is_dir():
                    (dest / path).mkdir(parents=True, exist_ok=True)
                elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    raise _unsafe(archive.name, f"{member.filename!r} n'est pas un fichier ordinaire")
                else:
                    (dest / path).parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, (dest / path).open("wb") as out:
                        shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidInput(f"Archive {archive.name} illisible : {exc}.", code="kit_not_archive") from exc
    _materialise(links, dest, archive.name)


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _limits(archive.name, len(members), sum(m.size for m in members))
            links: list[tuple[PurePosixPath, PurePosixPath]] = []
            for member in members:
                path = _member_path(member.name, archive.name)
                if member.issym():
                    links.append((path, _inside(path, member.linkname, archive.name)))
                elif member.islnk():  # hard link: its target is a member name
                    links.append((path, _member_path(member.linkname, archive.name)))
                elif member.isdir():
                    (dest / path).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    (dest / path).parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    assert src is not None  # a regular member always has content
                    with src, (dest / path).open("wb") as out:
                        shutil.copyfileobj(src, out)
                else:
                    raise _unsafe(archive.name, f"{member.name!r} n'est pas un fichier ordinaire")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"Archive {archive.name} illisible : {exc}.", code="kit_not_archive") from exc
    _materialise(links, dest, archive.name)


def _materialise(links: list[tuple[PurePosixPath, PurePosixPath]], dest: Path, archive: str) -> None:
    """Links inside the archive become copies of what they point at (no link is ever written)."""
    for link, target in links:
        source = dest / target
        if source.is_symlink() or not source.exists():
            raise _unsafe(archive, f"le lien {str(link)!r} pointe vers {str(target)!r}, absent de l'archive")
        (dest / link).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest / link, symlinks=False)
        else:
            shutil.copyfile(source, dest / link)


def _limits(name: str, members: int, size: int) -> None:
    if members > MAX_MEMBERS or size > MAX_BYTES:
        raise _unsafe(name, f"{members} éléments, {size // (1024 * 1024)} Mio décompressés : trop pour un kit CI-SIS")


def compile_schematrons(kit_dir: Path, cache_dir: Path | None) -> dict[str, str]:
    """Compile each schematron the agent runs (the disk cache the agent uses, when given): "ok" or why not."""
    validator = CdaValidator(kit_dir, cache_dir)
    results: dict[str, str] = {}
    for relative in validator.schematrons():
        if not validator.has(relative):
            results[Path(relative).name] = ABSENT
            continue
        try:
            validator.compile(relative)
        except RelaisError as exc:
            results[Path(relative).name] = exc.message
        except Exception as exc:  # a broken .sch (lxml, Saxon): reported, never fatal to status
            results[Path(relative).name] = f"{type(exc).__name__} : {exc}"
        else:
            results[Path(relative).name] = "ok"
    return results


def describe(status: KitStatus) -> list[str]:
    """French lines for ``relais kit status``."""
    if status.installed is None:
        return [f"Aucun kit CI-SIS installé dans {status.path.parent} (relais kit install <archive ou dossier>)."]
    m = status.installed
    lines = [f"Kit CI-SIS {m.version} installé le {m.installed_at}", f"  emplacement : {status.path}",
             f"  source : {m.source}", f"  SHA-256 de la source : {m.source_sha256}",
             f"  SHA-256 des fichiers installés : {m.tree_sha256} ({m.files} fichiers)"]
    if status.intact is not None:
        lines.append("  fichiers intacts" if status.intact else
                     "  ATTENTION : des fichiers du kit ont changé depuis l'installation (réinstallez-le)")
    if status.compiled:
        failed = {name: why for name, why in status.compiled.items() if why not in ("ok", ABSENT)}
        absent = sorted(name for name, why in status.compiled.items() if why == ABSENT)
        lines.append(f"  schématrons compilés : {len(status.compiled) - len(failed) - len(absent)}/"
                     f"{len(status.compiled)}")
        lines.extend(f"  ERREUR {name} : {why}" for name, why in sorted(failed.items()))
        lines.extend(f"  ATTENTION {name} absent du kit : les documents de ce volet seront refusés" for name in absent)
    return lines

