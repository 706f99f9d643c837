"""A remote runs list refreshed every few seconds asks the host to list only when something changed there
(one round trip of stats first), and still shows every change at the next refresh."""

from __future__ import annotations

import json

import pytest
from scripted import write_run

from gui.remote_workspace import RemoteIndex


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per list)
def test_a_quiet_workspace_is_not_listed_again_and_a_change_shows_at_once(remote, workspace):
    write_run(workspace / "first", steps=100)
    index = RemoteIndex(remote)
    assert [r.name for r in index.refresh()] == ["first"]
    index.refresh()  # settles: the list's own runs are watched from now on
    listed_at = index.listed_at
    assert [r.name for r in index.refresh()] == ["first"] and index.listed_at == listed_at  # nothing asked
    write_run(workspace / "second", steps=50, t0=2_000_000_000.0)
    assert [r.name for r in index.refresh()] == ["second", "first"] and index.listed_at > listed_at
    index.refresh()
    step = {r.name: r.step for r in index.refresh()}["first"]
    events = workspace / "first" / "events.jsonl"
    last = json.loads(events.read_text().splitlines()[-1])
    with open(events, "a") as f:  # the run writes on: its file grows, the folder does not change
        f.write(json.dumps({**last, "step": step + 500, "time": last["time"] + 1}) + "\n")
    assert {r.name: r.step for r in index.refresh()}["first"] == step + 500


def test_a_worker_asking_a_closed_workspace_is_told_it_is_unreachable(client, workspace):
    from gui.access import Unreachable
    from gui.access.ssh import SshAccess

    access = SshAccess(client.url(workspace), podium_command=client.podium_command())
    assert access.stat(str(workspace)) is not None
    access.close()  # the window closed it; a checkpoint verifier or lister thread may still ask
    with pytest.raises(Unreachable, match="closed"):
        access.stat(str(workspace))
