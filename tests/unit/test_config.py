"""Configuration: defaults, errors that name the key and the file, the example file in step with the code."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.config import Config, iter_keys, load_config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relais.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_working_defaults():
    config = load_config(None)
    assert config.api.host == "127.0.0.1"
    assert config.api.port == 7463
    assert config.api.allowed_origins == ()
    assert config.data_dir.name == "relais"


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "[api]\nprot = 8000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "api.prot"
    assert str(path) in info.value.message
    assert "clé inconnue" in info.value.message


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[apii]\nport = 1\n"))
    assert info.value.key == "apii"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[api]\nport = "7463"\n', "api.port"),
        ("[api]\nport = 70000\n", "api.port"),
        ("[api]\nport = true\n", "api.port"),
        ('[agent]\nlog_level = "LOUD"\n', "agent.log_level"),
        ('[api]\nallowed_origins = "http://x"\n', "api.allowed_origins"),
        ('[api]\nallowed_origins = ["*"]\n', "api.allowed_origins"),
        ('[api]\nallowed_origins = ["null"]\n', "api.allowed_origins"),
        ("[store]\nretention_days = 0\n", "store.retention_days"),
        ('[sandbox]\nenabled = "yes"\n', "sandbox.enabled"),
    ],
)
def test_bad_values_name_their_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == key


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "::", "example.org"])
def test_non_loopback_bind_is_refused(tmp_path, host):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[api]\nhost = "{host}"\n'))
    assert info.value.key == "api.host"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.5"])
def test_loopback_binds_are_accepted(tmp_path, host):
    assert load_config(write(tmp_path, f'[api]\nhost = "{host}"\n')).api.host == host


def test_invalid_toml_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[api\n"))
    assert "TOML invalide" in info.value.message


def test_env_variable_is_used(tmp_path, monkeypatch):
    from agent.config import resolve_config_path

    path = write(tmp_path, "[api]\nport = 9000\n")
    monkeypatch.setenv("RELAIS_CONFIG", str(path))
    assert resolve_config_path(None) == path
    assert resolve_config_path("/other.toml") == Path("/other.toml")


def test_example_file_documents_every_key_with_its_default():
    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    flat: dict[str, object] = {}

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    walk("", example)
    expected = dict(iter_keys(Config))
    assert sorted(flat) == sorted(expected), "config.example.toml and agent/config.py disagree"
    for key, default in expected.items():
        value = flat[key]
        if isinstance(default, tuple):
            value = tuple(value)  # type: ignore[arg-type]
        assert value == default, f"{key}: example says {value!r}, code default is {default!r}"
    # And the example loads as a valid configuration.
    load_config(ROOT / "config.example.toml")
