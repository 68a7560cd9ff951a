"""The README's LGC quickstart runs as written, top to bottom (issue 21 #8).

The blocks marked ``<!-- quickstart -->`` in README.md are run by bash as one script, from the repository root,
like a reader pasting them: `./scripts/demo.sh` starts the demo (``RELAIS_SKIP_SETUP=1``: .venv is set up
already), the `until` waits for its token, the curls and `relais` commands follow. What a test has to change is
only where things go: the port (``[api] port`` of a ``RELAIS_CONFIG`` file, and 7463 in the text), the token
file, the user's folders (HOME, XDG) and bin folder (``RELAIS_BIN_DIR``, put on the PATH as ~/.local/bin is);
the two commands sent to the background write to log files. A DEBUG trap marks where each command's output
starts, so each answer is checked against what the README says of it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.conftest import ROOT, free_port, reference_root

MARK = "@@@ "


def quickstart(readme: str) -> list[str]:
    """The lines of the README's marked shell blocks, in order."""
    blocks = re.findall(r"<!-- quickstart[^>]*-->\n```sh\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2, "README: the quickstart blocks are marked <!-- quickstart -->"
    return "".join(blocks).splitlines()


def script(lines: list[str], port: int, token_file: Path, logs: Path) -> str:
    out = []
    for n, line in enumerate(lines):
        background = re.match(r"^(.*\S)\s*&(\s+#.*)?$", line)
        if background:  # its output to a log of its own, not between the next commands' answers
            line = f"{background.group(1)} > {logs}/background-{n}.log 2>&1 &"
        out.append(line.replace("7463", str(port)).replace("/tmp/relais.token", str(token_file)))
    trap = ("_mark() { printf '\\n" + MARK + "%s\\n' \"${BASH_COMMAND//$'\\n'/ }\"; }\n"
            "trap _mark DEBUG\n")
    return trap + "\n".join(out) + "\n"


def answers(output: str) -> list[tuple[str, str]]:
    """(command as written, what it printed) for each command the script ran."""
    found: list[tuple[str, str]] = []
    for chunk in output.split("\n" + MARK)[1:]:
        command, _, printed = chunk.partition("\n")
        found.append((command, printed.strip()))
    return found


def answer_of(found: list[tuple[str, str]], prefix: str) -> str:
    matching = [printed for command, printed in found if command.startswith(prefix)]
    assert matching, f"no command starting with {prefix!r} ran: {[c for c, _ in found]}"
    return matching[-1]


def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    home, bin_dir, logs = tmp_path / "home", tmp_path / "home" / ".local" / "bin", tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "relais.toml"
    config.write_text(f"[api]\nport = {port}\n")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "RELAIS_BIN_DIR": str(bin_dir),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RELAIS_CONFIG": str(config),
           "RELAIS_SKIP_SETUP": "1", "RELAIS_REFERENCE": str(reference_root())}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_BIN_HOME"):
        env.pop(name, None)
    readme = (ROOT / "README.md").read_text()
    text = script(quickstart(readme), port, tmp_path / "relais.token", logs)
    (tmp_path / "quickstart.sh").write_text(text)
    proc = subprocess.Popen(["bash", str(tmp_path / "quickstart.sh")], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=180)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the demo and the event stream, left running by the script
    found = answers(output)
    demo = "\n".join(p.read_text() for p in sorted(logs.glob("background-*.log")))
    # The first command: relais on the PATH, the agent ready, the dashboard's link printed.
    assert f"Commande relais installée : {bin_dir / 'relais'}" in demo, demo
    assert f"Tableau de bord : http://127.0.0.1:{port}/ui/#login=" in demo, demo
    assert json.loads(answer_of(found, "curl -s $A/v1/health"))["status"] == "ok"
    cards = json.loads(answer_of(found, 'curl -s -H "$H" $A/v1/cards'))
    assert cards["cps"] and cards["vitale"], cards  # the demo doctor's CPS and a carte Vitale
    assert json.loads(answer_of(found, 'curl -s -H "$H" -H "$J" -d \'{"pin"'))["logged_in"] is True
    ins = json.loads(answer_of(found, 'curl -s -H "$H" -H "$J" -d \'{"source": "vitale"'))
    assert ins["result"] == "found" and ins["ins"]["value"] == "279035121518989", ins
    order = json.loads(answer_of(found, 'echo "$ORDER"'))
    assert "state" in order, output[-3000:]
    assert order["state"] == "scheduled" and order["client_ref"] == "visite-8812-doc-3" and order["send_at"], order
    listed = answer_of(found, "relais orders list")
    assert order["id"] in listed and "programmé" in listed, listed
    assert answer_of(found, "relais orders retry-failed") == "Aucun envoi en échec."
    known = json.loads(answer_of(found, 'curl -s -H "$H" $A/v1/documents/$DOC'))
    assert known["fed"] is False and known["dmp"] == {**known["dmp"], "state": "scheduled", "order_id": order["id"]}
    page = answer_of(found, 'curl -s -H "$H" "$A/v1/cda/render?order=$ID"')
    assert "<html" in page.lower() and "Compte rendu de consultation" in page, page[:500]
    # The live events the quickstart left listening in the background saw the order.
    assert "event: order.updated" in demo and f'"id": "{order["id"]}"' in demo, demo[-2000:]
