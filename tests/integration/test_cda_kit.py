"""`relais kit install` / `relais kit status`: the CI-SIS kit installed from a release archive or a folder, with its
version and checksums, refused when the archive is unsafe or incomplete, and found by the agent.

The archives are built at test time from the shared kit (never copied into the repository)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.cda.kit import install_kit, installed_kit, kit_root, kit_status
from agent.cli import main
from agent.errors import InvalidInput
from agent.reference import find_reference

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
TOP = "TestContenuCDA-3-0-2025.01"
PARTS = ("infrastructure", "schematrons", "jeuxDeValeurs")


@pytest.fixture(scope="module")
def release_zip(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GitHub-style release archive: one top folder holding the kit (and the tool's folder, not installed)."""
    kit = reference_dir / "ci-sis"
    path = tmp_path_factory.mktemp("release") / f"{TOP}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for part in PARTS:
            for file in sorted((kit / part).rglob("*")):
                if file.is_file():
                    zf.write(file, f"{TOP}/{file.relative_to(kit).as_posix()}")
        zf.writestr(f"{TOP}/moteur/testContenuCDA.jar", b"not installed")
    return path


def test_a_release_archive_is_installed_with_its_version_and_checksums(release_zip: Path, tmp_path: Path) -> None:
    manifest = install_kit(release_zip, tmp_path, now=NOW)
    assert manifest.version == TOP
    assert manifest.source_sha256 == hashlib.sha256(release_zip.read_bytes()).hexdigest()
    kit = tmp_path / "reference" / "ci-sis"
    assert (kit / "infrastructure/cda/CDA_extended.xsd").is_file() and not (kit / "moteur").exists()
    assert installed_kit(tmp_path) == manifest
    status = kit_status(tmp_path)
    assert status.intact is True and status.path == kit
    assert find_reference(installed=kit_root(tmp_path), beside_checkout=False) in (kit_root(tmp_path),
                                                                                   find_reference())
    # A file changed after installation: status says so.
    (kit / "jeuxDeValeurs" / "JDV_J07_XdsTypeCode_CISIS.xml").write_text("changed")
    assert kit_status(tmp_path).intact is False


def test_kit_status_on_the_command_line_says_where_which_version_and_compiles(release_zip: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    data = str(tmp_path / "data")
    assert main(["kit", "status", "--data-dir", data, "--no-compile"]) == 1
    assert "Aucun kit CI-SIS installé" in capsys.readouterr().out
    main(["doctor", "--data-dir", data])
    assert "ERREUR    aucun kit CI-SIS : aucun document CDA n'est accepté" in capsys.readouterr().out
    assert main(["kit", "install", str(release_zip), "--data-dir", data, "--version", "2025.01"]) == 0
    assert "Kit CI-SIS 2025.01 installé" in capsys.readouterr().out
    assert main(["kit", "status", "--data-dir", data, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["installed"]["version"] == "2025.01" and status["intact"] is True
    assert status["used"] == str(tmp_path / "data" / "reference" / "ci-sis")
    assert status["schematrons"]["ASIP-STRUCT-MIN-StrucMin.sch"] == "ok"
    main(["doctor", "--data-dir", data])
    assert "OK        kit CI-SIS 2025.01 installé" in capsys.readouterr().out
    # Every schematron compiles; the shared kit lacks the CR-BIO volet's (reported, not a failure of the kit).
    assert set(status["schematrons"].values()) <= {"ok", "absent du kit"}, status["schematrons"]


def test_a_folder_is_installed_and_the_previous_kit_replaced(reference_dir: Path, release_zip: Path,
                                                             tmp_path: Path) -> None:
    install_kit(release_zip, tmp_path, now=NOW)
    manifest = install_kit(reference_dir / "ci-sis", tmp_path, now=NOW, version="shared")
    assert manifest.version == "shared" and kit_status(tmp_path).intact is True
    assert (tmp_path / "reference" / "ci-sis" / "ExemplesCDA").is_dir()  # the folder's examples came along
    assert sorted(p.name for p in (tmp_path / "reference").iterdir()) == ["ci-sis", "ci-sis.json"]


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


KIT_FILES = {f"{TOP}/infrastructure/cda/CDA_extended.xsd": b"<x/>",
             f"{TOP}/schematrons/profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch": b"<x/>",
             f"{TOP}/schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch": b"<x/>",
             f"{TOP}/jeuxDeValeurs/JDV.xml": b"<x/>"}


@pytest.mark.parametrize("make", [
    lambda d: _zip(d / "evil.zip", {**KIT_FILES, f"{TOP}/../../evil.txt": b"pwned"}),
    lambda d: _zip(d / "abs.zip", {**KIT_FILES, "/tmp/evil.txt": b"pwned"}),
    lambda d: _zip(d / "link.zip", KIT_FILES, {f"{TOP}/jeuxDeValeurs/passwd": "../../../../etc/passwd"}),
    lambda d: _tar(d / "link.tar.gz", KIT_FILES, {f"{TOP}/schematrons/x.sch": "/etc/passwd"}),
    lambda d: _tar(d / "up.tar.gz", {**KIT_FILES, f"{TOP}/../evil.txt": b"pwned"}, {}),
], ids=["zip-dotdot", "zip-absolute", "zip-symlink-out", "tar-symlink-absolute", "tar-dotdot"])
def test_an_archive_escaping_its_folder_is_refused_and_nothing_is_written(make: Callable[[Path], Path],
                                                                         tmp_path: Path) -> None:
    source = make(tmp_path)
    data = tmp_path / "data"
    with pytest.raises(InvalidInput) as refused:
        install_kit(source, data, now=NOW)
    assert refused.value.code == "kit_unsafe" and "Kit CI-SIS refusé" in refused.value.message
    assert "hors" in refused.value.message or "sort" in refused.value.message
    assert installed_kit(data) is None and not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in (data / "reference").iterdir()) == []  # the staging folder is gone


def test_a_link_inside_the_archive_becomes_a_copy(tmp_path: Path) -> None:
    source = _tar(tmp_path / "ok.tar.gz", KIT_FILES, {f"{TOP}/jeuxDeValeurs/alias.xml": "JDV.xml"})
    install_kit(source, tmp_path / "data", now=NOW)
    alias = tmp_path / "data" / "reference" / "ci-sis" / "jeuxDeValeurs" / "alias.xml"
    assert alias.read_bytes() == b"<x/>" and not alias.is_symlink()


def test_an_archive_without_the_kit_folders_is_refused_and_the_old_kit_kept(release_zip: Path,
                                                                           tmp_path: Path) -> None:
    first = install_kit(release_zip, tmp_path, now=NOW)
    partial = {k: v for k, v in KIT_FILES.items() if "jeuxDeValeurs" not in k}
    with pytest.raises(InvalidInput) as refused:
        install_kit(_zip(tmp_path / "partial.zip", partial), tmp_path, now=NOW)
    assert refused.value.code == "kit_incomplete" and "jeuxDeValeurs" in refused.value.message
    assert installed_kit(tmp_path) == first and kit_status(tmp_path).intact is True
    with pytest.raises(InvalidInput) as not_archive:
        install_kit(tmp_path / "reference" / "ci-sis.json", tmp_path, now=NOW)
    assert not_archive.value.code == "kit_not_archive"


async def test_the_agent_validates_with_the_installed_kit(release_zip: Path, start_agent: Callable[..., Any],
                                                          tmp_path: Path) -> None:
    install_kit(release_zip, tmp_path / "data", now=NOW)
    agent = await start_agent(cda={"allow_unvalidated": False, "warm_up": False})
    cda = agent.services.cda
    assert cda.validated and cda.validator.kit_dir == tmp_path / "data" / "reference" / "ci-sis"
