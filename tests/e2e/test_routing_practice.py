"""Three agents on one machine, paired through the CLI as a practice would, with one `relais sandbox`.

"Cabinet" holds the demo doctor's CPS; "Accueil" and "Secretariat" have no card. Every agent is a `relais demo`
process on its own loopback ports, with static peers (no multicast needed). Checked end to end:
an order made on a card-less workstation reaches the simulated DMP exactly once, through the holder, and the
origin shows it sent; a cancel from the origin during the delay wins at the holder; the holder killed (SIGKILL)
after acknowledging still sends after its restart, once; while the holder is down, orders wait and follow it
when it is back; a wrong code, a used code and an unpaired workstation are refused.
"""

from __future__ import annotations

import base64
import functools
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import RELAIS, ROOT, AgentProcess, spawn_demo
from tests.support.documents import written_by
from tests.support.ins import traits_search
from tests.support.queue import order_body

DOCTOR = "01234567897"  # the demo CPS (relais_sandbox/cards.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(agent: AgentProcess, method: str, path: str, body: dict[str, Any] | None = None
         ) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(agent.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, *args, "--data-dir", str(data_dir)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def eventually(check: Callable[[], Any], timeout: float = 45, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {what}")
        time.sleep(0.2)


class Practice:
    def __init__(self, root: Path, reference: Path) -> None:
        self.root = root
        self.reference = reference
        self.sandbox_port = free_port()
        self.ports = {name: free_port() for name in ("Cabinet", "Accueil", "Secretariat")}
        self.agents: dict[str, AgentProcess] = {}
        self.sandbox: subprocess.Popen[bytes] | None = None
        self.used_code = ""

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start_sandbox(self) -> None:
        log = open(self.root / "sandbox.log", "ab")  # noqa: SIM115 - closed with the process
        self.sandbox = subprocess.Popen([*RELAIS, "sandbox", "--port", str(self.sandbox_port), "--state-dir",
                                         str(self.root / "sandbox-state"), "--data-dir", str(self.root / "sb")],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        eventually(lambda: self._up(f"{self.sandbox_url}/_sandbox/endpoints"), 60, "sandbox up")

    @staticmethod
    def _up(url: str) -> bool:
        try:
            get_json(url)
            return True
        except OSError:
            return False

    def config(self, name: str) -> Path:
        others = [f"127.0.0.1:{port}" for other, port in self.ports.items() if other != name]
        path = self.root / f"{name}.toml"
        path.write_text(
            f'[agent]\nworkstation_id = "{name}"\n'
            # The demo CPS certificate comes from the sandbox's test CA, which the simulated DMP trusts.
            f'[sandbox]\nstate_dir = "{self.root / "sandbox-state"}"\n'
            f'[practice]\ndiscovery = false\npresence_interval_seconds = 0.3\nstatic_peers = {json.dumps(others)}\n'
            # The orders' own short delays are what these tests play with, not the holder's minimum.
            'forwarded_min_delay_seconds = 0\n',
            encoding="utf-8")
        return path

    def start(self, name: str, cards: str) -> AgentProcess:
        agent = spawn_demo(self.root / name, "--config", str(self.config(name)), "--cards", cards, "--sandbox",
                           self.sandbox_url, "--peer-port", str(self.ports[name]), "--delay", "3600", wait=60)
        self.agents[name] = agent
        return agent

    def kill(self, name: str) -> None:
        agent = self.agents[name]
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(30)

    def data(self, name: str) -> Path:
        return self.root / name

    def cda(self) -> bytes:
        from agent.dmp.models import Professional
        from relais_sandbox.dmp import reidentify
        from relais_sandbox.identities import PAT_TROIS

        data = (self.reference / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
        p = PAT_TROIS
        cda, _ = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                            f"2.25.{uuid.uuid4().int}")
        return written_by(cda, Professional(rpps=DOCTOR, family_name="MULLER", given_name="CHARLES").national_id)

    def order(self, delay: int) -> dict[str, Any]:
        from relais_sandbox.identities import PAT_TROIS

        return order_body(cda=self.cda(), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=DOCTOR, delay=delay)

    def received(self, unique_id: str) -> int:
        submissions = get_json(f"{self.sandbox_url}/_sandbox/dmp/submissions")["items"]
        return sum(1 for s in submissions for d in s["documents"] if d["unique_id"] == unique_id)

    def stop(self) -> None:
        for agent in self.agents.values():
            if agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait()
        if self.sandbox is not None and self.sandbox.poll() is None:
            self.sandbox.kill()
            self.sandbox.wait()


def state(agent: AgentProcess, order_id: str) -> str:
    status, body = call(agent, "GET", f"/v1/orders/{order_id}")
    return str(body.get("state")) if status == 200 else f"http {status}"


def is_sent(agent: AgentProcess, order_id: str) -> bool:
    return state(agent, order_id) == "sent"


def peer_holds(agent: AgentProcess, name: str) -> bool:
    """``name`` is reachable and holds the doctor's CPS, PIN entered."""
    _, body = call(agent, "GET", "/v1/peers")
    return any(p["name"] == name and p["reachable"] and p["cps"] == {"rpps": DOCTOR, "logged_in": True}
               for p in body.get("peers", []))


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Practice]:
    from tests.conftest import reference_root

    reference = reference_root()
    if not reference.is_dir():
        pytest.skip("kit de référence absent")
    p = Practice(tmp_path_factory.mktemp("practice"), reference)
    try:
        p.start_sandbox()
        holder = p.start("Cabinet", "cps")
        # Earlier, the doctor's card searched the patient's INS at each desk: the DMP takes no INS that INSi did
        # not give on the workstation that creates the order (EX_GEN-1530). Then the card left.
        from relais_sandbox.identities import PAT_TROIS

        for name in ("Accueil", "Secretariat"):
            desk = p.start(name, "none")
            assert call(desk, "POST", "/_sandbox/cards/cps", {"inserted": True})[0] == 200
            eventually(lambda d=desk: call(d, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200, what="PIN")
            status, found = call(desk, "POST", "/v1/ins/search", traits_search(PAT_TROIS))
            assert status == 200 and found["ins"]["value"] == PAT_TROIS.ins, found
            assert call(desk, "POST", "/_sandbox/cards/cps", {"inserted": False})[0] == 200
        init = cli(p.data("Cabinet"), "practice", "init", "--name", "Cabinet des Tilleuls", "--config",
                   str(p.config("Cabinet")))
        assert init.returncode == 0, init.stderr
        for name in ("Accueil", "Secretariat"):
            invite = cli(p.data("Cabinet"), "practice", "invite")
            assert invite.returncode == 0, invite.stderr
            code = invite.stdout.split()[0]
            joined = cli(p.data(name), "practice", "join", code, "--peer", f"127.0.0.1:{p.ports['Cabinet']}",
                         "--config", str(p.config(name)))
            assert joined.returncode == 0, joined.stderr + joined.stdout
            p.used_code = code
        status, _ = call(holder, "POST", "/v1/cps/login", {"pin": "1234"})
        assert status == 200
        for agent in (p.agents["Accueil"], p.agents["Secretariat"]):
            eventually(functools.partial(peer_holds, agent, "Cabinet"), what="the CPS holder is seen")
        yield p
    finally:
        p.stop()


def test_peers_see_each_other_and_the_cps_holder(practice: Practice) -> None:
    _, body = call(practice.agents["Secretariat"], "GET", "/v1/peers")
    names = {p["name"]: p for p in body["peers"]}
    assert body["paired"] and body["practice"] == "Cabinet des Tilleuls"
    assert names["Cabinet"]["cps"] == {"rpps": DOCTOR, "logged_in": True}
    shown = cli(practice.data("Secretariat"), "status", "--config", str(practice.config("Secretariat")))
    assert f"poste Cabinet : joignable, carte CPS {DOCTOR} (PIN saisi)" in shown.stdout, shown.stderr
    eventually(lambda: "Accueil" in {p["name"] for p in call(practice.agents["Secretariat"], "GET",
                                                               "/v1/peers")[1]["peers"]}, what="gossip")


def test_an_order_from_a_card_less_workstation_is_sent_once_through_the_holder(practice: Practice) -> None:
    origin = practice.agents["Accueil"]
    status, created = call(origin, "POST", "/v1/orders", practice.order(delay=2))
    assert status == 201, created
    order_id = created["id"]
    eventually(lambda: state(practice.agents["Cabinet"], order_id) == "sent", 60, "sent by the holder")
    eventually(lambda: state(origin, order_id) == "sent", 30, "origin mirrors sent")
    _, mine = call(origin, "GET", f"/v1/orders/{order_id}")
    _, theirs = call(practice.agents["Cabinet"], "GET", f"/v1/orders/{order_id}")
    # The identifiers fixed at creation travelled unchanged (the DMP's duplicate check relies on them).
    assert mine["document"] == {**theirs["document"], "content_erased_at": mine["document"]["content_erased_at"]}
    unique_id = theirs["document"]["unique_id"]
    assert mine["deliveries"][0]["entry_uuid"] == theirs["deliveries"][0]["entry_uuid"]
    time.sleep(1)  # a few more presence rounds: nothing is sent again
    assert practice.received(unique_id) == 1


def test_a_cancel_from_the_origin_wins_during_the_delay(practice: Practice) -> None:
    origin = practice.agents["Secretariat"]
    status, created = call(origin, "POST", "/v1/orders", practice.order(delay=3600))
    assert status == 201
    order_id = created["id"]
    eventually(lambda: state(practice.agents["Cabinet"], order_id) == "scheduled", what="at the holder")
    eventually(lambda: state(origin, order_id) == "forwarded", what="forwarded")
    status, body = call(origin, "POST", f"/v1/orders/{order_id}/cancel")
    assert status == 200, body
    assert state(practice.agents["Cabinet"], order_id) == "cancelled"
    assert state(origin, order_id) == "cancelled"


def test_wrong_used_codes_and_an_unpaired_workstation_are_refused(practice: Practice) -> None:
    from agent.routing.pairing import new_code

    stranger = practice.root / "Stranger"
    stranger.mkdir(exist_ok=True)
    port = practice.ports["Cabinet"]
    wrong = cli(stranger, "practice", "join", new_code(), "--peer", f"127.0.0.1:{port}")
    assert wrong.returncode == 2 and "refusé" in wrong.stderr
    used = cli(stranger, "practice", "join", practice.used_code, "--peer", f"127.0.0.1:{port}")
    assert used.returncode == 2 and "refusé" in used.stderr
    listing = cli(stranger, "practice", "list")
    assert "aucun cabinet" in listing.stdout
    # Without a practice certificate, the peer listener answers nothing but a refusal.
    import ssl

    from agent.routing.tls import join_context

    context: ssl.SSLContext = join_context()
    request = urllib.request.Request(f"https://127.0.0.1:{port}/peer/v1/presence", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert refused.value.code == 403


def test_the_holder_killed_after_acknowledging_still_sends_once_after_restart(practice: Practice) -> None:
    origin = practice.agents["Accueil"]
    _status, created = call(origin, "POST", "/v1/orders", practice.order(delay=4))
    order_id = created["id"]
    eventually(lambda: state(origin, order_id) == "forwarded", what="forwarded")
    practice.kill("Cabinet")
    holder = practice.start("Cabinet", "cps")
    call(holder, "POST", "/v1/cps/login", {"pin": "1234"})
    eventually(lambda: state(holder, order_id) == "sent", 60, "sent after restart")
    eventually(lambda: state(origin, order_id) == "sent", 30, "origin mirrors sent")
    _, detail = call(holder, "GET", f"/v1/orders/{order_id}")
    assert practice.received(detail["document"]["unique_id"]) == 1


def test_the_holder_killed_in_the_middle_of_forwards_loses_and_duplicates_nothing(practice: Practice) -> None:
    """SIGKILL while orders stream in: some were acknowledged, some stored but not acknowledged, some never
    arrived. After the restart every one is sent, each exactly once."""
    origin = practice.agents["Accueil"]
    eventually(lambda: peer_holds(origin, "Cabinet"), what="holder seen")
    ids: list[str] = []
    for number in range(16):
        status, created = call(origin, "POST", "/v1/orders", practice.order(delay=3))
        assert status == 201, created
        ids.append(created["id"])
        if number == 7:
            practice.kill("Cabinet")
    holder = practice.start("Cabinet", "cps")
    call(holder, "POST", "/v1/cps/login", {"pin": "1234"})
    for order_id in ids:
        eventually(functools.partial(is_sent, holder, order_id), 90, "every order sent by the holder")
    for order_id in ids:
        eventually(functools.partial(is_sent, origin, order_id), 30, "the origin mirrors each")
    unique_ids = [call(holder, "GET", f"/v1/orders/{o}")[1]["document"]["unique_id"] for o in ids]
    assert [practice.received(u) for u in unique_ids] == [1] * len(ids)


def test_while_the_holder_is_down_orders_wait_then_follow_it(practice: Practice) -> None:
    origin = practice.agents["Secretariat"]
    practice.kill("Cabinet")
    eventually(lambda: not peer_holds(origin, "Cabinet"), what="the origin sees the holder gone")
    _status, created = call(origin, "POST", "/v1/orders", practice.order(delay=1))
    order_id = created["id"]
    time.sleep(3)
    assert state(origin, order_id) in ("scheduled", "waiting_card")  # nobody to take it: it waits
    holder = practice.start("Cabinet", "cps")
    call(holder, "POST", "/v1/cps/login", {"pin": "1234"})
    eventually(lambda: state(holder, order_id) == "sent", 60, "sent once the holder is back")
    eventually(lambda: state(origin, order_id) == "sent", 30, "origin mirrors sent")
    _, detail = call(holder, "GET", f"/v1/orders/{order_id}")
    assert practice.received(detail["document"]["unique_id"]) == 1


def test_a_workstation_removed_with_the_cli_is_dropped_by_every_peer(practice: Practice) -> None:
    removed = cli(practice.data("Cabinet"), "practice", "remove", "Secretariat", "--config",
                  str(practice.config("Cabinet")))
    assert removed.returncode == 0, removed.stderr
    listing = cli(practice.data("Cabinet"), "practice", "list", "--config", str(practice.config("Cabinet")))
    assert "Secretariat" in listing.stdout and "retiré" in listing.stdout

    def names(agent: AgentProcess) -> set[str]:
        return {p["name"] for p in call(agent, "GET", "/v1/peers")[1]["peers"]}

    def dropped(agent: AgentProcess) -> bool:
        return "Secretariat" not in names(agent)

    for name in ("Cabinet", "Accueil"):
        eventually(functools.partial(dropped, practice.agents[name]), what=f"{name} drops it")
    def refused(agent: AgentProcess) -> int:
        return int(call(agent, "GET", "/v1/status")[1]["routing"]["refused_connections"])

    before = refused(practice.agents["Cabinet"])
    eventually(lambda: refused(practice.agents["Cabinet"]) >= before + 2,
               what="Secretariat keeps knocking and is refused")  # presence rounds went by
    assert "Secretariat" not in names(practice.agents["Cabinet"]) | names(practice.agents["Accueil"])


def test_a_replayed_or_stale_forward_is_refused_by_the_holder(practice: Practice) -> None:
    """A forward recorded on the wire and played again (here with Accueil's own practice certificate) is ignored."""
    import http.client
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from agent.routing import tls
    from agent.routing.protocol import Forward, new_nonce

    data_dir = practice.data("Accueil")
    with sqlite3.connect(data_dir / "relais.db") as conn:
        ca_pem = bytes(conn.execute("SELECT ca_pem FROM routing_practice").fetchone()[0])
    context = tls.client_context(data_dir, ca_pem)
    now = datetime.now(UTC)
    order_id = str(uuid.uuid4())
    # A genuine order (the holder checks a forward as it checks its own LGC's): only its freshness is played with.
    body = practice.order(3600)
    cda = base64.b64decode(body["document"]["cda_base64"])
    root_id = etree.fromstring(cda).find("{urn:hl7-org:v3}id")
    assert root_id is not None
    unique_id = root_id.get("root", "") + (f"^{root_id.get('extension')}" if root_id.get("extension") else "")
    meta = {"destinations": ["dmp"], "send_at": now.timestamp() + 3600, "body_hash": "h",
            "ins": body["patient"]["ins"], "ins_oid": body["patient"]["oid"], "identity_status": "QUAL",
            "type_code": "87273-9", "document_unique_id": unique_id, "author_rpps": DOCTOR,
            "submission_set_unique_id": f"2.25.{uuid.uuid4().int}"}
    payload = json.dumps({"cda_base64": body["document"]["cda_base64"], "patient": body["patient"],
                          "author": body["author"], "visibility": {}}).encode()

    def send(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPSConnection("127.0.0.1", practice.ports["Cabinet"], context=context, timeout=10)
        try:
            connection.request("POST", "/peer/v1/forward", body=json.dumps(message),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    message = Forward(order_id, now, new_nonce(), DOCTOR, meta, payload).to_json()
    assert send(message) == (200, {"status": "stored", "state": "scheduled"})
    status, refused = send(message)
    assert (status, refused["code"]) == (409, "replayed")
    stale = Forward(order_id, now - timedelta(hours=1), new_nonce(), DOCTOR, meta, payload).to_json()
    status, refused = send(stale)
    assert (status, refused["code"]) == (409, "stale")
    holder = practice.agents["Cabinet"]
    status, items = call(holder, "GET", "/v1/orders?limit=200")
    assert sum(1 for o in items["items"] if o["id"] == order_id) == 1
    assert call(holder, "POST", f"/v1/orders/{order_id}/cancel")[0] == 200
