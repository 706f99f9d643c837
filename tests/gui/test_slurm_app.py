"""A SLURM run in the app: its queue state in the status bar and the run information, Stop cancels it while it waits.

On the real one-node SLURM of tests/test_slurm.py: a job that takes the whole node keeps the run's job
pending, so what the app shows is SLURM's own answer, through ``podium slurm status`` as on a remote host.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import SMOKE, podium
from tests.test_slurm import _job_state, slurm_env  # noqa: F401 (the fixture)


@pytest.mark.slow
def test_a_pending_slurm_run_shows_its_queue_state_and_stop_cancels_the_job(
    qtbot,
    make_window,
    workspace,
    slurm_env,  # noqa: F811
    monkeypatch,
):
    for name, value in slurm_env.items():
        monkeypatch.setenv(name, value)  # the app's own `podium slurm` calls reach the fixture's cluster
    blocker = subprocess.run(
        ["sbatch", "--parsable", "--exclusive", "--job-name=blocker", "--output=/dev/null", "--wrap", "sleep 600"],
        env=slurm_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        run_dir = workspace / "queued"
        result = podium("run", "--slurm", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", "1", env=slurm_env)
        assert result.returncode == 0, result.stderr
        job = json.loads((run_dir / "slurm.json").read_text())["job_id"]
        window = make_window()
        window.control.slurm.poll_s = 1.0
        window.open_run(run_dir)
        queue = window.status.queue
        qtbot.waitUntil(lambda: queue.isVisible() and "pending" in queue.text(), timeout=30000)
        assert queue.text().startswith(f"SLURM {job}: pending (")  # and why it waits, in SLURM's words
        assert f"job {job} · PENDING (" in window.info_view.toPlainText()
        assert window.act_stop.isEnabled()
        window.act_stop.trigger()
        qtbot.waitUntil(lambda: _job_state(slurm_env, job) in ("", "CANCELLED"), timeout=30000)
        qtbot.waitUntil(lambda: "pending" not in queue.text(), timeout=30000)
        assert not window.act_stop.isEnabled()  # nothing left to stop: the job will never run
        assert not (run_dir / "events.jsonl").exists() and not (run_dir / "control.jsonl").exists()
    finally:
        subprocess.run(["scancel", blocker], env=slurm_env, capture_output=True)


def test_a_crafted_job_file_shows_as_an_unknown_queue_state_naming_it(tmp_path):
    """The app's whole path (its worker thread, the real podium CLI) on a slurm.json that names no job."""
    from gui.access.local import LocalAccess
    from gui.models.slurm_state import SlurmWatch
    from tests.helpers import wait_until

    run_dir = tmp_path / "crafted"
    run_dir.mkdir()
    (run_dir / "slurm.json").write_text(json.dumps({"job_id": "$(reboot)"}))
    watch = SlurmWatch()
    watch.follow(LocalAccess(tmp_path), str(run_dir))
    wait_until(lambda: watch.poll() and watch.error, 60, "the answer")
    assert watch.job is None and f"{run_dir / 'slurm.json'}: job_id '$(reboot)' is not a SLURM job id" in watch.error
    assert not watch.cancel()  # nothing is sent to scancel for a job that is not known to wait
    watch.close()
