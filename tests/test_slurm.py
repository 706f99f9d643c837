"""``podium run --slurm`` on a real single-node SLURM started by a fixture, and the script it writes.

The fixture starts Debian's slurmctld and slurmd (``slurm-wlm``; ``.ci/run``
installs it) on this machine with a throw-away configuration: free ports,
``proctrack/linuxproc``, ``task/none``, no cgroups and ``auth/none`` (one
machine talking to itself needs no munge key). The daemons must run as root
to start jobs as their users, so the fixture skips elsewhere.
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

import pytest

from tests.conftest import SMOKE, podium
from tests.helpers import events_of, start_run, wait_until

DAEMONS = [shutil.which(d) or f"/usr/sbin/{d}" for d in ("slurmctld", "slurmd")]
HAVE_SLURM = all(Path(d).exists() for d in DAEMONS) and shutil.which("sbatch") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def slurm_env():
    """The environment in which SLURM's commands reach the fixture's one-node cluster."""
    if not HAVE_SLURM or os.geteuid() != 0:
        pytest.skip("needs slurm-wlm (slurmctld, slurmd, sbatch) and root to start the daemons")
    root = Path(tempfile.mkdtemp(prefix="podium-slurm-"))
    host = socket.gethostname()
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=podiumtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run([DAEMONS[0], "-f", str(conf), "-i"], env=env, check=True)
    subprocess.run([DAEMONS[1], "-f", str(conf)], env=env, check=True)
    try:
        wait_until(lambda: _sinfo(env) == "idle", 60, "the SLURM node to be idle")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for name in ("slurmd.pid", "slurmctld.pid"):
            try:
                os.kill(int((root / name).read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)


def _sinfo(env: dict) -> str:
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
    return result.stdout.strip()


def _job_state(env: dict, job: str) -> str:
    result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    return result.stdout.strip()


def test_the_dry_run_prints_a_valid_script_with_one_launcher_per_node(tmp_path):
    run_dir = tmp_path / "big"
    args = ["run", "--slurm", "--dry-run", "-c", str(SMOKE), "-r", str(run_dir), "--nodes", "2"]
    args += ["--gpus-per-node", "4", "--partition", "gpu", "--time", "04:00:00", "--rdzv-conf", "join_timeout=900"]
    result = podium(*args, check=True)
    text = result.stdout
    assert not run_dir.exists()  # a dry run writes nothing
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4", "--partition=gpu", "--requeue"):
        assert f"#SBATCH {directive}\n" in text
    assert "#SBATCH --signal=B:TERM@120\n" in text and "#SBATCH --time=04:00:00\n" in text
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    for part in ("--nproc 4", "--nnodes 2", "--node-rank $SLURM_NODEID", "--rdzv-endpoint $head:29500"):
        assert part in srun
    assert "--rdzv-id $SLURM_JOB_ID" in srun and "--rdzv-conf=join_timeout=900" in srun and "--sigterm stop" in srun
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_bad_slurm_options_are_refused_naming_them(tmp_path):
    result = podium("run", "--slurm", "--dry-run", "-c", str(SMOKE), "-r", str(tmp_path / "r"), "--time", "4 hours")
    assert result.returncode == 2 and "--time '4 hours'" in result.stderr
    result = podium("run", "--slurm", "--dry-run", "-c", str(SMOKE), "-r", str(tmp_path / "my run"))
    assert result.returncode == 2 and "must not contain spaces" in result.stderr


@pytest.mark.slow
def test_a_hostile_job_file_is_refused_naming_it_before_slurm_sees_it(tmp_path):
    (tmp_path / "slurm.json").write_text(json.dumps({"job_id": "1 --user=root"}))
    for action in ("status", "cancel"):
        result = podium("slurm", action, str(tmp_path))
        assert result.returncode == 2 and f"{tmp_path / 'slurm.json'}: job_id '1 --user=root'" in result.stderr
    result = podium("slurm", "status", str(tmp_path / "never-submitted"))
    assert result.returncode == 2 and "was not submitted with podium run --slurm" in result.stderr


@pytest.mark.slow
def test_a_slurm_run_checkpoints_on_sigterm_and_its_requeued_job_resumes_to_the_end(tmp_path, slurm_env):
    run_dir = tmp_path / "on-slurm"
    # Long enough that the job is still training when the signal comes after the status and cancel commands (at
    # 40 steps a loaded CI machine once saw it finish first).
    overrides = ["--set", "run.max_steps=200", "--set", "checkpoint.interval=1000", "--set", "run.eval_interval=1000"]
    result = podium("run", "--slurm", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", "1", *overrides, env=slurm_env)
    assert result.returncode == 0, result.stderr
    job = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    assert f"submitted SLURM job {job}" in result.stdout and (run_dir / "slurm.sbatch").exists()
    wait_until(lambda: events_of(run_dir, "metrics"), 180, "the job's first metrics")
    shown = json.loads(podium("slurm", "status", str(run_dir), "--json", env=slurm_env, check=True).stdout)
    assert shown["job_id"] == job and shown["state"] == "RUNNING" and shown["nodes"]
    # A running job is not cancelled from the queue (that would lose the steps since the last checkpoint).
    refused = podium("slurm", "cancel", str(run_dir), env=slurm_env)
    assert refused.returncode == 1 and f"podium control {run_dir} stop" in refused.stderr
    # What SLURM sends before a time limit (--signal=B:TERM@120) or at preemption.
    subprocess.run(["scancel", "--batch", "--signal=TERM", job], env=slurm_env, check=True)
    wait_until(lambda: events_of(run_dir, "run_end"), 120, "the run to stop")
    stopped = events_of(run_dir, "run_end")[-1]
    saved = events_of(run_dir, "checkpoint")
    assert stopped["reason"] == "stopped" and saved and saved[-1]["step"] == stopped["step"]
    wait_until(lambda: _job_state(slurm_env, job) == "PENDING", 60, "the job to be requeued")
    queued = podium("slurm", "status", str(run_dir), env=slurm_env, check=True).stdout
    # squeue gives the reason it waits (in parentheses) only once the scheduler has looked at the job again.
    assert queued.startswith(f"SLURM job {job}: PENDING")
    # SLURM holds a requeued job for two minutes; let it start now.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm_env, check=True)
    wait_until(lambda: events_of(run_dir, "run_end")[-1]["reason"] == "finished", 300, "the requeued job to finish")
    starts = events_of(run_dir, "run_start")
    assert len(starts) == 2 and starts[1]["resumed_from"]["step"] == stopped["step"]
    assert events_of(run_dir, "run_end")[-1]["step"] == 200
    wait_until(lambda: _job_state(slurm_env, job) == "", 60, "the job to leave the queue")


@pytest.mark.slow
def test_sigterm_stop_makes_the_launcher_stop_the_run_with_a_checkpoint(tmp_path):
    """SLURM's preemption signals every process of the job; a --slurm launcher then stops, it does not kill."""
    run_dir = tmp_path / "preempted"
    overrides = ["--set", "run.max_steps=400", "--set", "checkpoint.interval=1000", "--set", "run.eval_interval=1000"]
    launcher = start_run(run_dir, "-c", str(SMOKE), "--nproc", "1", "--sigterm", "stop", *overrides)
    try:
        wait_until(lambda: (run_dir / "events.jsonl").exists() and events_of(run_dir, "metrics"), 180, "metrics")
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=120) == 0, launcher.stderr.read()
    finally:
        if launcher.poll() is None:
            launcher.kill()
    end = events_of(run_dir, "run_end")[-1]
    assert end["reason"] == "stopped" and end["step"] < 400
    assert events_of(run_dir, "checkpoint")[-1]["step"] == end["step"]
