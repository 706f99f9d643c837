"""``podium run --slurm``: a readable sbatch script in the run directory, submitted (or printed with --dry-run).

The script asks for one task per node; ``srun`` starts one ``podium run``
launcher per node, which starts torchrun there (c10d rendezvous on the first
node of the allocation; a single node keeps podium's loopback-only launch).
Node 0 writes the run's files, as everywhere. SLURM's SIGTERM (the time limit
through ``--signal=B:TERM@S``, preemption, ``scancel --batch --signal=TERM``)
makes the script ask the run to stop after its step with a checkpoint, then
requeue itself; the requeued job finds the run's events and resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.contract import config as config_mod
from engine.contract.commandline import UsageError, engine_command
from engine.contract.rundir import RunDir

SCRIPT = "slurm.sbatch"
JOB_FILE = "slurm.json"
RDZV_PORT = 29500
TIME_LIMIT = re.compile(r"\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+(:\d{2}){0,2}")
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclasses.dataclass
class SlurmOptions:
    nodes: int = 1
    gpus_per_node: int | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    signal_s: int = 120  # seconds before the time limit that SLURM sends SIGTERM (checkpoint, requeue)
    dry_run: bool = False

    def check(self) -> None:
        if self.nodes < 1:
            raise UsageError(f"--nodes {self.nodes}: use 1 or more")
        if self.gpus_per_node is not None and self.gpus_per_node < 1:
            raise UsageError(f"--gpus-per-node {self.gpus_per_node}: use 1 or more (leave it out on CPU nodes)")
        if self.time is not None and not TIME_LIMIT.fullmatch(self.time):
            raise UsageError(f"--time {self.time!r}: use minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]], as sbatch does")
        for flag, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not NAME.fullmatch(value):
                raise UsageError(f"{flag} {value!r}: use letters, digits, '.', '_' and '-'")
        if self.signal_s < 1:
            raise UsageError(f"--slurm-signal {self.signal_s}: use 1 or more seconds")


def add_arguments(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("SLURM (podium run --slurm writes RUN/slurm.sbatch and submits it)")
    group.add_argument("--slurm", action="store_true", help="run as a SLURM batch job instead of here")
    group.add_argument("--nodes", type=int, default=1, help="nodes to allocate (one launcher per node)")
    group.add_argument("--gpus-per-node", type=int, help="GPUs per node; one rank per GPU (default: --nproc ranks)")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--time", help="time limit, as sbatch takes it (e.g. 04:00:00)")
    group.add_argument("--account", help="SLURM account to charge")
    group.add_argument(
        "--slurm-signal", type=int, default=120, metavar="S", help="seconds before the time limit to checkpoint"
    )
    group.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing")


def options(args: argparse.Namespace) -> SlurmOptions:
    return SlurmOptions(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time=args.time,
        account=args.account,
        signal_s=args.slurm_signal,
        dry_run=args.dry_run,
    )


def script(run_dir: Path, slurm: SlurmOptions, nproc: int, extra: list[str], python: str = sys.executable) -> str:
    """The sbatch script: every choice visible, one launcher per node, checkpoint and requeue on SIGTERM."""
    run = shlex.quote(str(run_dir))
    ranks = slurm.gpus_per_node or nproc
    directives = [
        f"--job-name=podium-{run_dir.name}",
        f"--nodes={slurm.nodes}",
        "--ntasks-per-node=1",
        *([f"--gpus-per-node={slurm.gpus_per_node}"] if slurm.gpus_per_node else []),
        *([f"--partition={slurm.partition}"] if slurm.partition else []),
        *([f"--account={slurm.account}"] if slurm.account else []),
        *([f"--time={slurm.time}"] if slurm.time else []),
        f"--output={run_dir}/slurm-%j.out",
        "--open-mode=append",
        "--requeue",
        f"--signal=B:TERM@{slurm.signal_s}",
    ]
    launcher = engine_command("run", "-c", str(run_dir / "config.yaml"), "-r", str(run_dir), python=python)
    launcher += ["--nproc", str(ranks), "--no-progress", "--sigterm", "stop", *extra]
    if slurm.nodes > 1:
        launcher += ["--nnodes", str(slurm.nodes), "--rdzv-backend", "c10d", "--rdzv-id", "$SLURM_JOB_ID"]
        launcher += ["--node-rank", "$SLURM_NODEID", "--rdzv-endpoint", f"$head:{RDZV_PORT}"]
    # The launcher line is expanded on each node (its node id) by srun's bash, not by the batch shell.
    quoted = " ".join(a if a.startswith("$") else shlex.quote(a) for a in launcher)
    stop = " ".join(shlex.quote(a) for a in engine_command("control", str(run_dir), "stop", python=python))
    lines = [
        "#!/bin/bash",
        f"# Written by `podium run --slurm` for the run in {run_dir}; submit it again with: sbatch {run}/{SCRIPT}",
        *[f"#SBATCH {d}" for d in directives],
        "set -uo pipefail",
        "# The first node of the allocation hosts the rendezvous of a multi-node run.",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "resume=''",
        "# A requeued job continues the run from its newest valid checkpoint.",
        f"if [ -s {run}/events.jsonl ]; then resume=--resume; fi",
        "export head resume",
        "preempted=0",
        "# SLURM's SIGTERM (time limit, preemption, scancel --batch --signal=TERM): the run stops after its",
        "# current step with a checkpoint, then the job goes back in the queue.",
        f"trap 'preempted=1; {stop}' TERM",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c {shlex.quote(f'exec {quoted} $resume')} &",
        "step=$!",
        "wait $step; code=$?",
        "while kill -0 $step 2>/dev/null; do wait $step; code=$?; done  # a trap interrupts wait: wait for the end",
        'if [ "$preempted" = 1 ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
        "exit $code",
    ]
    return "\n".join(lines) + "\n"


def submit(run_dir: Path, cfg: config_mod.Config, slurm: SlurmOptions, nproc: int, extra: list[str]) -> int:
    """Write the config and the script into the run directory, then submit (or print) it."""
    slurm.check()
    ranks = slurm.gpus_per_node or nproc
    cfg.check_world_size(ranks * slurm.nodes)
    run_dir = run_dir.resolve()
    if any(c.isspace() for c in str(run_dir)):
        # #SBATCH lines are not shell: a path with a space cannot be quoted in --output.
        raise UsageError(f"--run-dir {str(run_dir)!r}: a SLURM run directory's path must not contain spaces")
    text = script(run_dir, slurm, nproc, extra)
    if slurm.dry_run:
        print(text, end="")
        return 0
    run = RunDir(run_dir)
    if run.events.exists() and run.events.stat().st_size > 0:
        raise UsageError(f"{run_dir}: already holds a run; resubmit its own {SCRIPT} with sbatch to continue it")
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError("--slurm: sbatch is not on PATH; run this on a SLURM login node (or use --dry-run)")
    run_dir.mkdir(parents=True, exist_ok=True)
    run.config.write_text(config_mod.dump(cfg))
    (run_dir / SCRIPT).write_text(text)
    result = subprocess.run([sbatch, "--parsable", str(run_dir / SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"sbatch refused the job: {result.stderr.strip()}", file=sys.stderr)
        return 1
    job = result.stdout.strip().split(";")[0]
    (run_dir / JOB_FILE).write_text(json.dumps({"job_id": job, "script": SCRIPT, "submitted": time.time()}) + "\n")
    print(f"submitted SLURM job {job}: {run_dir / SCRIPT}; its output goes to {run_dir}/slurm-{job}.out")
    return 0
