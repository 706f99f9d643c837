"""``podium runs`` and ``podium stop``, which an app runs on a server at every look at its runs: they start
with their own module alone, and answer as the full command line would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripted import write_run

REPO = Path(__file__).resolve().parent.parent
# What the full command line loads and these two never need: the config schema and YAML, the studies, SLURM.
HEAVY = ("yaml", "engine.contract.config", "engine.launcher.cli", "engine.launcher.launch", "engine.studies.hpo_cli")

_PROBE = """
import json, sys
from engine.launcher.entry import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "loaded": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def test_podium_runs_and_stop_start_without_the_rest_of_the_command_line(tmp_path):
    write_run(tmp_path / "finished", steps=50)
    calls = [
        ["runs", "--json", str(tmp_path)],
        ["runs", str(tmp_path / "nowhere")],
        ["stop", str(tmp_path / "finished"), "--signal", "TERM"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(calls), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    *listing, probe = done.stdout.strip().splitlines()
    answer = json.loads(probe)
    assert answer["loaded"] == []
    # As the full command line answers: the list, bad input exit 2 naming the folder, nothing signalled exit 1.
    assert answer["codes"] == [0, 2, 1]
    assert [(r["name"], r["state"]) for r in json.loads(listing[0])] == [("finished", "finished")]
    assert f"{tmp_path / 'nowhere'}: not a folder" in done.stderr
    assert "not sent" in done.stderr
