"""Checkpoints in real 2-rank torchrun runs on CPU: bit-identical resume, a fork, a different world size,
SIGKILL of a rank mid-run and during a save, a full disk, background saving with retention, averaging.

Faults come from tests/faults/sitecustomize.py (real SIGKILL and ENOSPC, injected from outside the engine).
The runs share one uninterrupted reference run; each is a few seconds of the smoke config.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import subprocess

import pytest
import torch

from engine.checkpoints import checkpoint, retention
from engine.contract import config as config_mod
from engine.contract import progress
from engine.contract.config import ModelSection
from engine.contract.manifest import read_manifest, temp_folders, verify_checkpoint
from engine.music import data
from engine.training.model import MusicTransformer
from tests.conftest import REPO, SMOKE, podium
from tests.helpers import events_of, train_to, trainer_in_this_process, wait_until

pytestmark = pytest.mark.slow  # every test starts real torchrun runs or trains in this process

# Dropout on, so a resume that lost a rank's RNG stream would change the result.
BASE = ["-c", str(SMOKE), "--set", "model.dropout=0.1", "--set", "run.max_steps=20", "--set", "checkpoint.interval=10"]
FAULTS = str(REPO / "tests" / "faults")


def run(run_dir, *args, fault: str | None = None, nproc: int = 2, check: bool = True):
    env = dict(os.environ)
    if fault:
        env.update(PODIUM_FAULT=fault, PYTHONPATH=os.pathsep.join(filter(None, [FAULTS, env.get("PYTHONPATH")])))
    return podium("run", "-r", str(run_dir), "--nproc", str(nproc), "--no-progress", *args, check=check, env=env)


def ckpt(run_dir, step):
    return run_dir / "checkpoints" / f"step-{step:07d}"


def assert_identical(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(run_a, run_b, step=20) -> None:
    """Weights, optimizer moments, RNG streams and data positions of every rank: all bit-identical."""
    a, b = checkpoint.load(ckpt(run_a, step)), checkpoint.load(ckpt(run_b, step))
    for part in ("model", "optimizer"):
        assert_identical(a[part], b[part], part)
    for key in ("step", "tokens_seen", "ranks", "world_size"):
        assert_identical(a["train_state"][key], b["train_state"][key], key)


def losses(run_dir) -> dict[int, float]:
    """The loss logged at each step; a resumed or restarted run's later values win."""
    return {e["step"]: e["loss"] for e in events_of(run_dir, "metrics")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """20 uninterrupted steps on 2 ranks, checkpoints at 10 and 20."""
    run_dir = tmp_path_factory.mktemp("ckpt-runs") / "reference"
    run(run_dir, *BASE)
    return run_dir


def _copy_until(reference, target, step):
    """A run directory as the reference's was at ``step``: its config and its checkpoint of that step."""
    target.mkdir()
    shutil.copy(reference / "config.yaml", target / "config.yaml")
    shutil.copytree(ckpt(reference, step), ckpt(target, step))


def test_resume_gives_bit_identical_weights_and_losses(reference, tmp_path):
    resumed = tmp_path / "resumed"
    _copy_until(reference, resumed, 10)
    run(resumed, "--resume")
    start = events_of(resumed, "run_start")[0]
    assert start["resumed_from"]["step"] == 10 and start["resumed_from"]["mode"] == "resume"
    assert start["resumed_from"]["config_changes"] == {}
    assert_same_training_state(reference, resumed)
    expected = losses(reference)
    assert losses(resumed) == {s: expected[s] for s in (15, 20)}
    assert events_of(resumed, "run_end")[-1]["reason"] == "finished"


def test_a_killed_rank_and_a_killed_save_restart_and_finish_as_if_nothing_happened(reference, tmp_path):
    survivor = tmp_path / "survivor"
    # Attempt 0: rank 1 dies as step 15 starts. Attempt 1 resumes at 10 and rank 0 dies while
    # writing the optimizer file of step 20. Attempt 2 must resume at 10 again, and finish.
    faults = "kill_step:1:15:0;kill_save:0:20:optimizer.pt:1"
    result = run(survivor, *BASE, "--set", "run.max_restarts=2", fault=faults)
    assert "[restart 1] resumed from step 10" in result.stdout
    restarts = events_of(survivor, "restart")
    assert [(r["attempt"], r["resumed_from"]) for r in restarts] == [(1, 10), (2, 10)]
    assert restarts[0]["steps_lost"] >= 4 and restarts[1]["steps_lost"] >= 10
    assert restarts[0]["path"].endswith("step-0000010") and restarts[0]["max_restarts"] == 2
    interrupted = [e for e in events_of(survivor, "error") if e.get("where") == "training"]
    assert interrupted and not interrupted[0]["fatal"] and "torchrun restarts the workers" in interrupted[0]["message"]
    cleaned = [e for e in events_of(survivor, "checkpoint_removed") if "incomplete save" in e["reason"]]
    assert len(cleaned) == 1 and ".tmp-step-0000020-" in cleaned[0]["path"]
    assert not temp_folders(survivor / "checkpoints")
    assert events_of(survivor, "run_end")[-1]["reason"] == "finished"
    assert len(events_of(survivor, "run_end")) == 1, "an attempt that torchrun restarts must not end the run"
    assert_same_training_state(reference, survivor)
    assert losses(survivor)[20] == losses(reference)[20]


def test_a_fork_starts_from_another_runs_checkpoint_with_a_changed_config(reference, tmp_path):
    fork = tmp_path / "fork"
    run(fork, "--from-checkpoint", str(ckpt(reference, 10)), "--set", "optim.lr=0.001")
    start = events_of(fork, "run_start")[0]
    info = start["resumed_from"]
    assert info["mode"] == "fork" and info["step"] == 10 and info["path"] == str(ckpt(reference, 10).resolve())
    assert info["config_changes"] == {"optim.lr": [0.003, 0.001]}
    assert start["config"]["optim"]["lr"] == 0.001 and start["config"]["model"]["dropout"] == 0.1
    metrics = events_of(fork, "metrics")
    assert metrics[0]["step"] == 15 and all(m["peak_lr"] == 0.001 for m in metrics)
    assert sorted(p.name for p in (fork / "checkpoints").iterdir()) == ["step-0000020"]
    both = run(tmp_path / "both", "--resume", "--from-checkpoint", str(ckpt(reference, 10)), check=False)
    assert both.returncode == 2 and "use one of them" in both.stderr
    broken = run(tmp_path / "broken", "--from-checkpoint", str(tmp_path / "nowhere"), check=False)
    assert broken.returncode == 2 and "--from-checkpoint" in broken.stderr and "manifest.json: missing" in broken.stderr


def test_resuming_on_a_different_world_size_continues_the_data_order(reference, tmp_path):
    single = tmp_path / "single"
    _copy_until(reference, single, 10)
    run(single, "--resume", nproc=1)
    notes = [e["message"] for e in events_of(single, "status") if "world size changed" in e.get("message", "")]
    assert notes and "from 2 to 1" in notes[0] and "not bit-identical" in notes[0]
    state = checkpoint.load(ckpt(single, 20))["train_state"]
    assert state["world_size"] == 1 and state["step"] == 20
    # Two ranks drew in lockstep; the single rank goes on from the window they reached together.
    before = checkpoint.load(ckpt(reference, 10))["train_state"]["ranks"][0]["sampler"]
    cfg = config_mod.load(single / "config.yaml")
    corpus = data.prepare(cfg)
    train_ids, _ = data.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    windows = len(data.WindowSet(corpus, train_ids, cfg.data.seq_len, 0, (0, 127)))
    expected = data.RankSampler(windows, 0, 1, cfg.run.seed, before["epoch"], before["position"] * 2)
    for _ in range(10 * cfg.batch.global_batch_size):
        expected.next()
    assert state["ranks"][0]["sampler"] == expected.state()
    final = losses(single)[20]
    assert math.isfinite(final) and abs(final - losses(reference)[20]) < 0.5


def test_a_full_disk_keeps_earlier_checkpoints_and_continues_or_stops_as_configured(tmp_path):
    # Inline saves: the failure is known at its own step (async_save reports it at the next save;
    # test_checkpoint.py covers that).
    longer = [*BASE, "--set", "run.max_steps=30", "--set", "checkpoint.async_save=false"]
    going = tmp_path / "continue"
    run(going, *longer, fault="full_disk:0:20")
    error = next(e for e in events_of(going, "error") if e.get("where") == "checkpoint")
    assert error["step"] == 20 and not error["fatal"] and error["errno"] == "ENOSPC"
    assert "earlier checkpoints are intact" in error["message"] and "training continues" in error["message"]
    assert sorted(p.name for p in (going / "checkpoints").iterdir()) == ["step-0000010", "step-0000030"]
    assert events_of(going, "run_end")[-1]["reason"] == "finished"

    stopping = tmp_path / "stop"
    result = run(stopping, *longer, "--set", "checkpoint.on_error=stop", fault="full_disk:0:20", check=False)
    assert result.returncode == 1
    error = next(e for e in events_of(stopping, "error") if e.get("where") == "checkpoint")
    assert error["fatal"] and "the run stops" in error["message"]
    end = events_of(stopping, "run_end")[-1]
    assert end["reason"] == "failed" and end["step"] == 20 and "No space left on device" in end["message"]
    assert sorted(p.name for p in (stopping / "checkpoints").iterdir()) == ["step-0000010"]
    verify_checkpoint(ckpt(stopping, 10))


def test_a_background_save_that_fails_is_reported_once_and_a_continuing_run_saves_again(tmp_path):
    # The failure of the step-20 save is announced at a log step while training goes on; the next save,
    # in the background, must not take that old failure for its own.
    going = tmp_path / "continue"
    run(going, *BASE, "--set", "run.max_steps=30", "--set", "checkpoint.async_save=true", fault="full_disk:0:20")
    errors = [e for e in events_of(going, "error") if e.get("where") == "checkpoint"]
    assert [(e["step"], e["fatal"], e["errno"]) for e in errors] == [(20, False, "ENOSPC")]
    assert sorted(p.name for p in (going / "checkpoints").iterdir()) == ["step-0000010", "step-0000030"]
    assert events_of(going, "run_end")[-1]["reason"] == "finished"


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(name, size_bytes)`` mounts a tmpfs of that size under tmp_path; all are unmounted after."""
    mounted = []

    def mount(name: str, size_bytes: int):
        point = tmp_path / name
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("a small disk is a tmpfs mount, and this machine has no mount command")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"a small disk is a tmpfs mount, not permitted here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _bytes_on_tmpfs(folder) -> int:
    """What ``folder``'s files take on a tmpfs, which allocates whole pages."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(-(-p.stat().st_size // page) * page for p in folder.rglob("*") if p.is_file())


def test_a_disk_that_fills_up_is_named_and_the_run_follows_on_error(reference, small_disk):
    # Room for the run's other files (twice over) and one and a half checkpoints: the save at step 20
    # fills the disk inside torch.save.
    one = _bytes_on_tmpfs(ckpt(reference, 10))
    rest = _bytes_on_tmpfs(reference) - _bytes_on_tmpfs(reference / "checkpoints")
    assert one > 4 * rest, "the disk's size below assumes a checkpoint is much larger than the run's other files"
    size = 2 * rest + one + one // 2
    longer = [*BASE, "--set", "run.max_steps=30", "--set", "checkpoint.async_save=false"]

    going = small_disk("continue", size) / "run"
    run(going, *longer, check=False)
    errors = [e for e in events_of(going, "error") if e.get("where") == "checkpoint"]
    assert {e["step"] for e in errors} == {20, 30}
    for error in errors:
        assert "disk full" in error["message"] and error["errno"] == "ENOSPC" and not error["fatal"]
        assert "training continues" in error["message"]
    assert sorted(losses(going)) == sorted(losses(reference)) + [25, 30]  # it trained on past the full disk
    # Its final state could not be saved either, which the end of the run says.
    end = events_of(going, "run_end")[-1]
    assert end["step"] == 30 and "disk full" in end["message"]
    assert sorted(p.name for p in (going / "checkpoints").iterdir()) == ["step-0000010"]
    verify_checkpoint(ckpt(going, 10))

    stopping = small_disk("stop", size) / "run"
    result = run(stopping, *longer, "--set", "checkpoint.on_error=stop", check=False)
    assert result.returncode == 1
    end = events_of(stopping, "run_end")[-1]
    assert end["reason"] == "failed" and end["step"] == 20 and "disk full" in end["message"]
    assert sorted(p.name for p in (stopping / "checkpoints").iterdir()) == ["step-0000010"]
    verify_checkpoint(ckpt(stopping, 10))


def test_background_saves_with_retention_and_compression_leave_training_unchanged(reference, tmp_path):
    kept = tmp_path / "kept"
    run(
        kept,
        *BASE,
        "--set",
        "checkpoint.interval=5",
        "--set",
        "checkpoint.async_save=true",
        "--set",
        "checkpoint.keep_last=1",
        "--set",
        "checkpoint.keep_best=1",
        "--set",
        "checkpoint.milestone_every=10",
        "--set",
        "checkpoint.compression=zstd",
    )
    saved = events_of(kept, "checkpoint")
    assert [e["step"] for e in saved] == [5, 10, 15, 20]
    assert [e["background"] for e in saved] == [True, True, True, True]
    assert all(e["compression"]["codec"] == "zstd" and e["compression"]["ratio"] > 1 for e in saved)
    # What is on disk is exactly what the policy decides from the saved metrics.
    history = [retention.Snapshot(f"step-{e['step']:07d}", e["step"], "full", e["time"], e["metric"]) for e in saved]
    policy = retention.Policy(keep_last=1, keep_best=1, milestone_every=10)
    expected = {}
    for i in range(len(history)):
        step_history = [s for s in history[: i + 1] if s.name in expected or s is history[i]]
        step_history = [
            retention.Snapshot(s.name, s.step, expected.get(s.name, s.kind), s.time, s.metric) for s in step_history
        ]
        expected = {s.name: s.kind for s in retention.apply(step_history, retention.plan(step_history, policy, 0.0))}
    on_disk = {p.name: read_manifest(p)["kind"] for p in (kept / "checkpoints").iterdir()}
    assert on_disk == expected and on_disk["step-0000020"] == "full" and on_disk["step-0000010"] == "weights"
    removed = events_of(kept, "checkpoint_removed")
    assert {e["path"].rsplit("/", 1)[1] for e in removed} == {s.name for s in history} - {"step-0000020"}
    assert all(e["reason"] for e in removed)
    archived = read_manifest(ckpt(kept, 10))
    assert archived["weights_dtype"] == "fp16" and "model.fp16.pt.zst" in archived["files"]
    final = checkpoint.load(ckpt(kept, 20))
    assert_identical(final["model"], checkpoint.load(ckpt(reference, 20))["model"], "model")


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights(reference, tmp_path):
    out = tmp_path / "uniform"
    result = podium(
        "checkpoints", "average", str(ckpt(reference, 10)), str(ckpt(reference, 20)), "--out", str(out), check=True
    )
    a, b = (checkpoint.load(ckpt(reference, s))["model"] for s in (10, 20))
    averaged = checkpoint.load(out)
    for key in a:
        assert torch.equal(averaged["model"][key], ((a[key].double() + b[key].double()) / 2).float()), key
    manifest = averaged["manifest"]
    assert manifest["kind"] == "weights" and manifest["reason"] == "average" and manifest["step"] == 20
    provenance = manifest["provenance"]
    assert provenance["method"] == "uniform" and [i["step"] for i in provenance["inputs"]] == [10, 20]
    assert all(i["used"] and i["model_sha256"] for i in provenance["inputs"])
    # Each stage on stderr as it happens; the report alone on stdout.
    assert "[0/7] loading checkpoint 1 of 2" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("[7/7] wrote")
    # The report shows each input's validation loss next to the average's.
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(f"{i['val_loss']:.4f}" in line for i, line in zip(provenance["inputs"], lines[1:3]))
    assert f"{manifest['metrics']['val_loss']:.4f}" in lines[3] and "uniform average of 2" in lines[3]
    # The reference's own evaluation at step 20 and the averager's agree: the same validation split.
    assert provenance["inputs"][1]["val_loss"] == pytest.approx(
        read_manifest(ckpt(reference, 20))["metrics"]["val_loss"], rel=1e-5
    )

    # A weights-only checkpoint (here the average) seeds a new run: its weights, a fresh optimizer, step 0.
    seeded = tmp_path / "seeded"
    run(seeded, "--from-checkpoint", str(out), "--set", "run.max_steps=5", "--set", "checkpoint.interval=5")
    info = events_of(seeded, "run_start")[0]["resumed_from"]
    assert info["mode"] == "weights" and info["step"] == 0 and info["config_changes"]["run.max_steps"] == [20, 5]
    assert losses(seeded)[5] < losses(reference)[5] - 0.5, "the first steps should start from trained weights"

    greedy = podium(
        "checkpoints",
        "average",
        str(ckpt(reference, 20)),
        str(ckpt(reference, 10)),
        str(out),
        "--out",
        str(tmp_path / "greedy"),
        "--method",
        "greedy",
        "--progress",
        "json",
        check=True,
    )
    soup = read_manifest(tmp_path / "greedy")
    best_input = min(i["val_loss"] for i in soup["provenance"]["inputs"])
    assert soup["metrics"]["val_loss"] <= best_input and "greedy average" in greedy.stdout
    # For the GUI: a JSON line per stage on stdout, counting up to the end, before the report.
    steps = [progress.parse(line) for line in greedy.stdout.splitlines()]
    steps = steps[: steps.index(None)]
    assert [p.done for p in steps] == sorted(p.done for p in steps) and steps[-1].done == steps[
        -1
    ].total == 3 * 2 + 3 + 2
    assert [stage for stage, _ in itertools.groupby(p.stage for p in steps)] == [
        "load",
        "prepare",
        "validate",
        "soup",
        "validate",
        "write",
        "done",
    ]
    candidates = [p.message for p in steps if p.stage == "soup" and "val loss" in p.message]
    assert len(candidates) == 2 and all(("joins" in m) != ("left out" in m) for m in candidates)
    assert f"average: val loss {soup['metrics']['val_loss']:.4f}" in [p.message for p in steps]

    other = tmp_path / "other" / "step-0000001"
    wide = MusicTransformer(ModelSection(d_model=64, n_layers=2, n_heads=2), manifest["vocab_size"], 64)
    config = dict(manifest["config"], model=dict(manifest["config"]["model"], d_model=64))
    checkpoint.write_checkpoint(
        other,
        1,
        {"model": wide.state_dict()},
        kind="weights",
        meta={"config": config, "vocab_size": manifest["vocab_size"]},
    )
    mismatch = podium("checkpoints", "average", str(ckpt(reference, 10)), str(other), "--out", str(tmp_path / "bad"))
    assert mismatch.returncode == 2 and "architectures differ (d_model: 32 vs 64)" in mismatch.stderr
    assert not (tmp_path / "bad").exists()


def test_a_background_save_is_announced_at_the_first_log_step_after_it_is_written(tmp_path):
    """Not at the next save (500 steps later by default): the GUI's checkpoint list follows these events."""
    run_root = tmp_path / "run"
    overrides = [
        "run.max_steps=12",
        "run.log_interval=2",
        "run.eval_interval=1000",
        "checkpoint.interval=8",
        "checkpoint.async_save=true",
    ]
    with trainer_in_this_process(run_root, overrides) as trainer:
        interval = trainer.begin()
        interval = train_to(trainer, interval, 8)
        wait_until(trainer.checkpoints.manager.writer.done, 60, "the background write of step 8")
        assert events_of(run_root, "checkpoint") == []
        interval = train_to(trainer, interval, 10)
        (announced,) = events_of(run_root, "checkpoint")
        assert announced["step"] == 8 and announced["background"] and verify_checkpoint(ckpt(run_root, 8))["step"] == 8
        interval = train_to(trainer, interval, 12)
        assert trainer.end() == "finished"
    assert [e["step"] for e in events_of(run_root, "checkpoint")] == [8, 12]
