"""The contract can be generated: openapi-python-client builds a client from the running agent's
/v1/openapi.json, and that client runs the README's quickstart (cards, PIN, INS from the carte Vitale, a PDF to
the DMP)."""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import reference_root
from tests.support.documents import PDF


def generate(url: str, where: Path) -> None:
    with urllib.request.urlopen(f"{url}/v1/openapi.json", timeout=10) as response:  # public route
        (where / "openapi.json").write_bytes(response.read())
    tool = Path(sys.executable).parent / "openapi-python-client"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # its ruff formatting step
    result = subprocess.run([str(tool), "generate", "--path", str(where / "openapi.json"),
                             "--output-path", str(where / "relais_client"), "--meta", "none"],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Unable to process schema" not in result.stdout, result.stdout[-3000:]


def test_a_generated_client_runs_the_readme_quickstart(demo_process, tmp_path: Path) -> None:
    agent = demo_process("client", env={"RELAIS_REFERENCE": str(reference_root())})
    generate(agent.url, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module("relais_client")
        api = "relais_client.api"
        models = importlib.import_module("relais_client.models")
        get_health = importlib.import_module(f"{api}.agent.get_health")
        get_cards = importlib.import_module(f"{api}.cards.get_cards")
        cps_login = importlib.import_module(f"{api}.cards.post_cps_login")
        ins_search = importlib.import_module(f"{api}.identity.post_ins_search")
        post_orders = importlib.import_module(f"{api}.orders.post_orders")
        get_order = importlib.import_module(f"{api}.orders.get_orders_id")
        client = client_module.AuthenticatedClient(base_url=agent.url, token=agent.token)

        assert get_health.sync_detailed(client=client).status_code == 200
        cards = get_cards.sync_detailed(client=client)
        assert cards.status_code == 200
        cards_json = json.loads(cards.content)
        assert cards_json["cps"]["present"] and cards_json["vitale"]["present"]
        login = cps_login.sync_detailed(client=client, body=models.PostCpsLoginBody.from_dict({"pin": "1234"}))
        assert login.status_code == 200, login.content
        found = ins_search.sync_detailed(client=client, body=models.PostInsSearchBodyType0.from_dict(
            {"source": "vitale", "beneficiary_index": 0, "card_serial": cards_json["vitale"]["card_serial"]}))
        assert found.status_code == 200, found.content
        identity = json.loads(found.content)
        assert identity["result"] == "found"

        traits = identity["traits"]
        body = {
            "client_ref": "generated-client-1",
            "patient": {"ins": identity["ins"]["value"], "oid": identity["ins"]["oid"],
                        "identity_status": "QUAL", "birth_name": traits["birth_name"],
                        "given_names": traits["given_names"], "sex": traits["sex"],
                        "birth_date": traits["birth_date"], "birth_place": traits["birth_place"]},
            "author": {"rpps": cards_json["cps"]["holder"]["rpps"]},
            "document": {"pdf_base64": base64.b64encode(PDF).decode(), "type_code": "11488-4",
                         "title": "Compte rendu de consultation", "service_start": "2026-11-22T09:00:00+01:00"},
            "destinations": {"dmp": True},
            "delay_seconds": 0,
        }
        created = post_orders.sync_detailed(client=client, body=models.OrderRequest.from_dict(body))
        assert created.status_code == 201, created.content
        order = created.parsed
        assert isinstance(order, models.Order)
        assert order.document.title == "Compte rendu de consultation"

        # In the generated client a misspelled field is a Python error: the contract's objects are closed.
        with pytest.raises(TypeError):
            models.Destinations(dmpp=True)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = json.loads(get_order.sync_detailed(order.id, client=client).content)["state"]
            if state in ("sent", "failed"):
                break
            time.sleep(0.2)
        assert state == "sent"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "relais_client" or m.startswith("relais_client.")]:
            del sys.modules[name]
