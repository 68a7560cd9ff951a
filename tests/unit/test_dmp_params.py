"""The DMP's parameters file as the rules read it (EX_GEN-1540, EX_GEN-1550, EX_2.1-1050, EX_0.1-1115)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.dmp.params import read_file, read_values
from agent.domain import dmp_rules as rules
from agent.domain.dmp_params import DmpParameters, ParameterNames, from_values, secret_connection_offer

NAMES = ParameterNames()
FALLBACK = DmpParameters(majority_age=18, minors_management=True, allow_masked_and_invisible=False)


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?><parametres><parametre nom="age-majorite" valeur="16"/>'
    b'<parametre nom="cumul-invisible_patient-masque_ps" valeur="true"/>'
    b'<parametre nom="fonctions-gestion-mineurs" valeur="false"/><parametre nom="production" valeur="true"/>'
    b'</parametres>',
    b'<params xmlns="urn:x"><age-majorite>16</age-majorite><cumul-invisible_patient-masque_ps>true'
    b'</cumul-invisible_patient-masque_ps><fonctions-gestion-mineurs>false</fonctions-gestion-mineurs>'
    b'<production>true</production></params>',
    b'<p><param name="age-majorite">16</param><param key="cumul-invisible_patient-masque_ps" value="true"/>'
    b'<param code="fonctions-gestion-mineurs" value="false"/><param id="production" value="1"/></p>',
    b"# parametres LPS\nage-majorite=16\ncumul-invisible_patient-masque_ps = true\n"
    b"fonctions-gestion-mineurs: false\nproduction=oui\n",
])
def test_the_shapes_of_the_file_read(data: bytes) -> None:
    params = read_file(data, NAMES, FALLBACK)
    assert params.as_dict() == {"majority_age": 16, "minors_management": False,
                                "allow_masked_and_invisible": True, "production": True}


def test_a_name_absent_keeps_the_configuration_value_and_names_are_configuration() -> None:
    assert read_file(b"<p><age-majorite>17</age-majorite></p>", NAMES, FALLBACK) == DmpParameters(majority_age=17)
    renamed = ParameterNames(majority_age="ageMajorite")
    assert read_file(b"<p><ageMajorite>19</ageMajorite></p>", renamed, FALLBACK).majority_age == 19


@pytest.mark.parametrize("data", [
    b"<p><autre>1</autre></p>",  # no known name: not the parameters file
    b"<p><age-majorite>dix-huit</age-majorite></p>",
    b"<p><age-majorite>0</age-majorite></p>",
    b"<p><cumul-invisible_patient-masque_ps>peut-etre</cumul-invisible_patient-masque_ps></p>",
    b"<p><unclosed></p>",
    b'<!DOCTYPE p [<!ENTITY x "18">]><p><age-majorite>&x;</age-majorite></p>',  # hardened parsing
    b"\xff\xfe\x00garbage",
])
def test_a_file_that_cannot_be_read_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        read_file(data, NAMES, FALLBACK)


def test_read_values_keeps_the_first_of_two_values() -> None:
    assert read_values(b"age-majorite=18\nage-majorite=21\n") == {"age-majorite": "18"}
    assert from_values({"age-majorite": "21"}, NAMES, FALLBACK).majority_age == 21


# --- the rules that depend on them ------------------------------------------------------------------------


def test_ex_2_1_1050_masked_and_invisible_refused_only_while_the_parameter_is_false() -> None:
    both = rules.Flags(masked_to_ps=True, invisible_to_patient=True)
    for data, refused in ((b"<p><cumul-invisible_patient-masque_ps>false</cumul-invisible_patient-masque_ps></p>",
                           True),
                          (b"<p><cumul-invisible_patient-masque_ps>true</cumul-invisible_patient-masque_ps></p>",
                           False)):
        allow = read_file(data, NAMES, FALLBACK).allow_masked_and_invisible
        if refused:
            with pytest.raises(rules.InvalidInput):
                rules.check_visibility(both, type_code="11488-4", allow_masked_and_invisible=allow)
        else:
            rules.check_visibility(both, type_code="11488-4", allow_masked_and_invisible=allow)


def test_ex_gen_1550_no_secret_connection_while_the_minors_management_is_off() -> None:
    today = dt.date(2026, 12, 7)
    rules.check_secret_connection(birth="2014-09-23", today=today, majority_age=18, type_code="11488-4")
    with pytest.raises(rules.InvalidInput) as caught:
        rules.check_secret_connection(birth="2014-09-23", today=today, majority_age=18, type_code="11488-4",
                                      minors_management=False)
    assert caught.value.code == "secret_connection_unavailable"
    assert caught.value.extra["rule"] == "EX_GEN-1550"


def test_ex_gen_1550_majority_from_the_parameter_strictly_below() -> None:
    on_birthday = dt.date(2032, 9, 23)  # cas 11 is 18 that day
    assert secret_connection_offer("2014-09-23", on_birthday, DmpParameters(majority_age=18), 0).minor is False
    assert secret_connection_offer("2014-09-23", on_birthday, DmpParameters(majority_age=19), 0).minor is True
    off = secret_connection_offer("2014-09-23", on_birthday, DmpParameters(minors_management=False), 0)
    assert off.minor is None and not off.offered and not off.allowed


def test_tnr_01_step_5_cas_11_the_minimum_age_below_and_above() -> None:
    """[CDT] TNR-01 step 5: the "âge minimum" varied with patient cas 11 (born 23/09/2014): under it the connexion
    secrète is not proposed systematically, but stays allowed (EX_0.1-1115)."""
    today = dt.date(2026, 12, 7)  # cas 11 is 12
    params = DmpParameters(majority_age=18)
    above = secret_connection_offer("2014-09-23", today, params, minimum_age=10)
    assert (above.minor, above.offered, above.allowed, above.age) == (True, True, True, 12)
    below = secret_connection_offer("2014-09-23", today, params, minimum_age=13)
    assert (below.minor, below.offered, below.allowed) == (True, False, True)
    assert "âge minimum" in below.reason
    # The minimum age never refuses a connexion secrète the professional asks for.
    rules.check_secret_connection(birth="2014-09-23", today=today, majority_age=params.majority_age,
                                  type_code="11488-4", minors_management=params.minors_management)


def test_relais_doctor_says_how_old_the_copy_on_disk_is(tmp_path: Any) -> None:
    import json

    from agent.cli.system import _dmp_params_line
    from agent.config import load_config

    config = load_config(None, agent={"data_dir": str(tmp_path)},
                         dmp={"params_url": "https://www.dmp.fr/web/dmp/documents/param-lps"})
    lines: list[tuple[str, str]] = []

    def line(level: str, text: str) -> None:
        lines.append((level, text))

    _dmp_params_line(config, line)
    assert lines[-1][0] == "ERREUR" and "jamais téléchargé" in lines[-1][1]
    (tmp_path / "cache").mkdir()
    for hours, level in ((30, "OK"), (8 * 24, "ERREUR")):
        fetched = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
        (tmp_path / "cache" / "dmp-parameters.json").write_text(json.dumps({"fetched_at": fetched.isoformat()}))
        _dmp_params_line(config, line)
        assert lines[-1][0] == level and f"il y a {hours} h" in lines[-1][1], lines[-1]
