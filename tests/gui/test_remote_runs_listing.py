"""``podium runs`` and ``podium stop``, which an app runs on a server at every look at its runs: they start
with their own module alone, and answer as the full command line would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripted import write_run

REPO = Path(__file__).resolve().parents[2]
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


def test_the_listing_carries_each_runs_notes_as_they_are_and_the_app_checks_them(tmp_path):
    import os
    import time

    from engine.contract.notes import MAX_NOTES_BYTES, make_notes, write_notes
    from engine.launcher.runs_listing import list_runs
    from gui.access.local import LocalAccess
    from gui.models.lab import RemoteNotes
    from gui.remote_workspace import summary_of

    for name in ("kept", "garbled", "huge", "fifo", "plain"):
        write_run(tmp_path / name, steps=20)
    write_notes(tmp_path / "kept", make_notes("the baseline", ["ref"], "kept for the paper"))
    (tmp_path / "garbled" / "notes.json").write_bytes(b'{"tags": ["two words"]}')
    (tmp_path / "huge" / "notes.json").write_bytes(b'{"note": "' + b"x" * 4 * MAX_NOTES_BYTES + b'"}')
    os.mkfifo(tmp_path / "fifo" / "notes.json")  # opened for reading, it would hold the listing forever
    wire = json.loads(json.dumps(list_runs(tmp_path)))  # as the app receives it
    assert {r["name"]: r.get("notes_error") for r in wire}["fifo"] == "not a regular file"
    assert len({r["name"]: r["notes"] for r in wire if "notes" in r}["huge"]) == MAX_NOTES_BYTES + 1  # no more

    class NoReads(LocalAccess):  # the notes came with the list: nothing is read run by run
        def read_many(self, paths, size):
            raise AssertionError(f"read {paths}")

    asked = time.monotonic()
    rows = {r.summary.name: r for r in RemoteNotes(NoReads(tmp_path)).rows([summary_of(r, asked) for r in wire])}
    assert rows["kept"].title == "the baseline" and rows["kept"].tags == ("ref",) and rows["kept"].problem is None
    assert "garbled/notes.json" in rows["garbled"].problem and "tags" in rows["garbled"].problem
    assert "huge/notes.json" in rows["huge"].problem and "larger than" in rows["huge"].problem
    assert "fifo/notes.json" in rows["fifo"].problem and "not a regular file" in rows["fifo"].problem
    assert rows["plain"].notes is None and rows["plain"].problem is None
