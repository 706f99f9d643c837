"""Studies on a real PostgreSQL server: workers on several "hosts", a lost worker, and what is never written.

A session fixture runs ``initdb`` and ``postgres`` (Debian's postgresql
package; ``.ci/run`` installs it) in a temporary folder on a free loopback
port, as the ``postgres`` user when the tests run as root (postgres refuses
root), with a password, and removes it all afterwards. Each worker gets its
own workspace, as workers on different hosts would: they share nothing but
the database, so no file lock can keep them apart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from engine.contract.studies import study_dir
from tests.conftest import SMOKE, podium
from tests.helpers import events_of, wait_until
from tests.test_hpo import FAKE_TRIAL, GRID_6, SPACE_2D, start_driver, write

PASSWORD = "pw-Zq81-never-written"
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))

pytestmark = pytest.mark.skipif(
    not PG_BINS, reason="PostgreSQL server binaries not installed (apt-get install postgresql)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> str:
    """The URL of a fresh PostgreSQL server with password authentication, up for the whole session."""
    bin_dir = PG_BINS[-1].parent
    root = Path(tempfile.mkdtemp(prefix="podium-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if as_owner:
        shutil.chown(pwfile, "postgres", "postgres")
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "podium", "--pwfile", str(pwfile), "-A", "scram-sha-256"]
    subprocess.run([*as_owner, *initdb], check=True, capture_output=True)
    port = _free_port()
    pg_ctl = [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
    options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off"
    subprocess.run([*pg_ctl, "-w", "-o", options, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://podium:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Path:
    from tests.conftest import REPO

    path = tmp_path / "fake_trial.py"
    path.write_text(FAKE_TRIAL)
    monkeypatch.setenv("PODIUM_REPO", str(REPO))
    return path


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.slow
def test_two_hosts_share_a_grid_study_without_running_a_point_twice(tmp_path, fake, postgres):
    space = write(tmp_path / "space.yaml", GRID_6)
    common = dict(study="pg-grid", base=SMOKE, space=space, trials=6, sampler="grid", pruner="none", storage=postgres)
    env = {"FAKE_STEPS": "10", "FAKE_DELAY": "0.1"}  # a second per trial: both workers are up long before the end
    workers = [start_driver(tmp_path, fake, env=env, workspace=tmp_path / f"host-{h}", **common) for h in "ab"]
    outputs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = load(postgres, "pg-grid")
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(points) == 6 and len(set(points)) == 6, points
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    ran = [sorted(p.name for p in study_dir(tmp_path / f"host-{h}", "pg-grid").glob("trial-*")) for h in "ab"]
    assert all(ran) and len(ran[0]) + len(ran[1]) == 6 and not set(ran[0]) & set(ran[1]), ran
    # The base config is stored once, out of the user attributes that `optuna studies` prints.
    assert "base_config" not in study.user_attrs
    for out in outputs:
        assert "storage postgresql://podium:***@127.0.0.1" in out
    assert files_holding(tmp_path / "host-a", PASSWORD) == [] and files_holding(tmp_path / "host-b", PASSWORD) == []


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_by_the_heartbeat_and_run_again(tmp_path, fake, postgres):
    space = write(tmp_path / "space.yaml", SPACE_2D)
    beat = {"interval": 1, "grace": 3, "retries": 1}
    first = start_driver(
        tmp_path,
        fake,
        env={"FAKE_STEPS": "100000", "FAKE_DELAY": "0.05"},
        study="pg-lost",
        workspace=tmp_path / "host-a",
        base=SMOKE,
        space=space,
        trials=2,
        pruner="none",
        seed=1,
        storage=postgres,
        heartbeat=beat,
    )
    run_dir = study_dir(tmp_path / "host-a", "pg-lost") / "trial-0000"
    wait_until(lambda: (run_dir / "events.jsonl").exists() and events_of(run_dir, "eval"), 60, "the first trial's eval")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert load(postgres, "pg-lost").trials[0].state == optuna.trial.TrialState.RUNNING
    # Another host joins with --worker semantics; its trials last long enough to see the grace period pass.
    second = start_driver(
        tmp_path,
        fake,
        env={"FAKE_STEPS": "60", "FAKE_DELAY": "0.1"},
        study="pg-lost",
        workspace=tmp_path / "host-b",
        storage=postgres,
        worker=True,
        heartbeat=beat,
    )
    wait_until(
        lambda: load(postgres, "pg-lost").trials[0].state == optuna.trial.TrialState.FAIL, 60, "the lost trial to fail"
    )
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out
    trials = load(postgres, "pg-lost").trials
    lost, retry = trials[0], next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.params == lost.params and retry.state == optuna.trial.TrialState.COMPLETE
    assert [t.state.name for t in trials].count("COMPLETE") == 2 and len(trials) == 3
    shown = json.loads(podium("hpo", "show", "--study", "pg-lost", "--storage", postgres, "--json", check=True).stdout)
    assert "stopped sending heartbeats" in shown["trials"][0]["reason"]
    assert "queued again" in shown["trials"][0]["reason"]


@pytest.mark.slow
def test_joining_a_study_that_does_not_exist_names_it_without_the_password(postgres):
    result = podium("hpo", "--worker", "--study", "nobody-started-it", "--storage", postgres)
    assert result.returncode == 2
    assert "no study 'nobody-started-it'" in result.stderr and "podium:***@127.0.0.1" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
