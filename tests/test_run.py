"""End to end: real torchrun runs of the smoke config, as a user starts and steers them."""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import statistics
from pathlib import Path

import pytest
import symusic

from engine.contract.commands import send_command
from engine.contract.manifest import MANIFEST, verify_checkpoint
from engine.music.data import load_corpus
from tests.conftest import SMOKE, podium
from tests.helpers import ack_for, events_of, start_run, wait_until

pytestmark = pytest.mark.slow  # every test starts real torchrun runs

METRIC_FIELDS = {
    "loss",
    "lr",
    "grad_norm",
    "grad_norm_clipped",
    "samples_per_s",
    "tokens_per_s",
    "step_time",
    "data_wait_frac",
    "rank_work_times",
    "tokens_seen",
    "epoch",
}


def test_smoke_run_writes_the_run_directory_and_events_in_order(smoke_run):
    events = events_of(smoke_run)
    types = [e["type"] for e in events]
    assert types[0] == "status" and events[0]["state"] == "preparing"
    order = [types.index(t) for t in ("data", "run_start", "metrics", "eval", "checkpoint", "run_end")]
    assert order == sorted(order)
    assert types[-1] == "run_end" and events[-1]["reason"] == "finished" and events[-1]["step"] == 30
    assert all({"v", "type", "time", "step"} <= e.keys() for e in events)
    start = events[types.index("run_start")]
    assert start["env"]["world_size"] == 2 and start["env"]["backend"] == "gloo"
    assert start["env"]["precision"] == "fp32" and start["env"]["precision_reason"]
    assert start["config"]["run"]["max_steps"] == 30
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [5, 10, 15, 20, 25, 30]
    for m in metrics:
        assert METRIC_FIELDS <= m.keys()
        assert math.isfinite(m["loss"]) and m["tokens_per_s"] > 0 and len(m["rank_work_times"]) == 2
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    # A healthy run raises no alarm: no straggler between equal ranks, no collapse of an untrained model.
    assert [e["kind"] for e in events if e["type"] == "anomaly"] == []
    assert metrics[-1]["lr"] < metrics[1]["lr"], "cosine decay should lower the LR by the end"
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [15, 30] and all(e["replicas_in_sync"] for e in evals)
    for name in ("config.yaml", "events.jsonl", "control.jsonl", "engine.log", "launcher.json"):
        assert (smoke_run / name).exists(), name
    final = [e for e in events if e["type"] == "checkpoint"][-1]
    assert verify_checkpoint(smoke_run / "checkpoints" / "step-0000030")["step"] == 30
    assert final["path"].endswith("step-0000030")


def test_sample_from_a_checkpoint_decodes_to_valid_midi(smoke_run, tmp_path):
    out = tmp_path / "sample.mid"
    result = podium(
        "sample", str(smoke_run / "checkpoints" / "step-0000030"), "--out", str(out), "--seed", "3", check=True
    )
    assert "notes" in result.stdout
    score = symusic.Score(str(out))
    pitches = [n.pitch for t in score.tracks for n in t.notes]
    assert len(pitches) > 0 and all(21 <= p <= 108 for p in pitches)
    # Its musical metrics beside it, for the app (which never loads the music libraries) to show.
    metrics = json.loads((tmp_path / "sample.mid.metrics.json").read_text())
    assert metrics["pitch_range"] == max(pitches) - min(pitches) and 0 < metrics["pitch_class_entropy"] <= 3.6
    missing = podium("sample", str(tmp_path / "nope"), "--out", str(out))
    assert missing.returncode == 2 and "not a checkpoint folder" in missing.stderr


def test_sample_exports_with_the_datas_tempo_metre_and_voice_names(smoke_run, tmp_path):
    data = next(e for e in events_of(smoke_run) if e["type"] == "data")
    meta = load_corpus(Path(data["cache"])).meta
    checkpoint = smoke_run / "checkpoints" / "step-0000030"
    out = tmp_path / "sample.mid"
    podium("sample", str(checkpoint), "--out", str(out), "--seed", "1", check=True)
    score = symusic.Score(str(out))
    assert score.ticks_per_quarter == 480
    assert [round(t.qpm, 2) for t in score.tempos] == [round(statistics.median(meta["qpm"]), 2)]
    metres = {(n, d) for n, d in meta["time_signatures"]}
    assert len(score.time_signatures) == 1
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) in metres
    assert score.tracks
    for track in score.tracks:
        assert track.name == meta["voice_names"][str(track.program)]

    # A checkpoint saved without the data's facts still samples, and says what it wrote instead.
    old = tmp_path / "old"
    shutil.copytree(checkpoint, old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["music"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    result = podium("sample", str(old), "--out", str(tmp_path / "old.mid"), check=True)
    assert "120 bpm" in result.stdout
    assert [round(t.qpm) for t in symusic.Score(str(tmp_path / "old.mid")).tempos] == [120]


def test_every_control_command_is_applied_and_acknowledged_on_two_ranks(tmp_path):
    run_dir = tmp_path / "steered"
    proc = start_run(
        run_dir,
        "-c",
        str(SMOKE),
        "--nproc",
        "2",
        "--set",
        "run.max_steps=100000",
        "--set",
        "run.eval_interval=40",
        "--set",
        "checkpoint.interval=0",
    )
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        pause = send_command(run_dir, "pause")
        paused = wait_until(lambda: ack_for(run_dir, pause), 60, "the pause ack")
        assert paused["outcome"] == "done"
        twice = send_command(run_dir, "pause")
        assert wait_until(lambda: ack_for(run_dir, twice), 30, "second pause ack")["reason"] == "already paused"
        set_lr = send_command(run_dir, "set_lr", lr=1e-4)
        lr_ack = wait_until(lambda: ack_for(run_dir, set_lr), 30, "the set_lr ack")
        assert lr_ack["outcome"] == "done" and lr_ack["new_peak_lr"] == 1e-4
        save = send_command(run_dir, "save_checkpoint")
        save_ack = wait_until(lambda: ack_for(run_dir, save), 60, "the save ack")
        # Paused: nothing trained between the pause and these commands.
        assert save_ack["step"] == lr_ack["step"] == paused["step"]
        assert verify_checkpoint(run_dir / "checkpoints" / f"step-{paused['step']:07d}")["reason"] == "command"
        with open(run_dir / "control.jsonl", "a") as f:
            f.write(json.dumps({"id": "bogus-1", "cmd": "explode"}) + "\n{not json\n")
        bogus = wait_until(lambda: ack_for(run_dir, "bogus-1"), 30, "the refusal of an unknown command")
        assert bogus["outcome"] == "refused" and "unknown command 'explode'" in bogus["reason"]
        wait_until(
            lambda: any("not a JSON object" in (a.get("reason") or "") for a in events_of(run_dir, "control_ack")),
            30,
            "the refusal of a malformed line",
        )
        resume = send_command(run_dir, "resume")
        assert wait_until(lambda: ack_for(run_dir, resume), 30, "the resume ack")["outcome"] == "done"
        after = wait_until(
            lambda: [m for m in events_of(run_dir, "metrics") if m["step"] > paused["step"]],
            60,
            "training to continue after resume",
        )
        assert after[0]["peak_lr"] == 1e-4 and after[0]["lr"] <= 1e-4
        synced = wait_until(
            lambda: [e for e in events_of(run_dir, "eval") if e["step"] > paused["step"]],
            120,
            "an evaluation after set_lr",
        )
        assert synced[0]["replicas_in_sync"], "ranks disagree on weights: a command was applied at different steps"
        stop = send_command(run_dir, "stop")
        assert wait_until(lambda: ack_for(run_dir, stop), 60, "the stop ack")["outcome"] == "done"
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    end = events_of(run_dir, "run_end")[-1]
    assert end["reason"] == "stopped"
    final_step = end["step"]
    assert verify_checkpoint(run_dir / "checkpoints" / f"step-{final_step:07d}")["reason"] == "final"


def test_ctrl_c_stops_gracefully_with_a_final_checkpoint(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = start_run(run_dir, "-c", str(SMOKE), "--set", "run.max_steps=100000", "--set", "checkpoint.interval=0")
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopping after this step" in proc.stderr.read()
    end = events_of(run_dir, "run_end")[-1]
    assert end["reason"] == "stopped"
    assert (run_dir / "checkpoints" / f"step-{end['step']:07d}").is_dir()


def test_engine_failure_is_reported_with_exit_1(tmp_path):
    run_dir = tmp_path / "no-gpu"
    result = podium("run", "-c", str(SMOKE), "-r", str(run_dir), "--set", "run.device=cuda")
    assert result.returncode == 1
    end = events_of(run_dir, "run_end")[-1]
    assert end["reason"] == "failed" and "CUDA" in end["message"]
    assert "run failed" in result.stderr
    # engine.log holds the rank's traceback, marked with its rank, and the launcher's verdict.
    log = (run_dir / "engine.log").read_text()
    assert "[rank0]:Traceback (most recent call last):" in log and "[rank0]:RuntimeError:" in log
    assert "[launcher]: run failed" in log


def test_engine_log_holds_the_launchers_lines_of_a_healthy_run(smoke_run):
    log = (smoke_run / "engine.log").read_text().splitlines()
    assert log[0] == "[launcher]: [preparing] preparing data"
    assert "[launcher]: [running] training" in log
    assert log[-1].startswith("[launcher]: run finished at step 30")


def test_existing_run_directory_is_not_overwritten(smoke_run):
    result = podium("run", "-c", str(SMOKE), "-r", str(smoke_run))
    assert result.returncode == 2 and "already holds a run" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_complete_one_run(tmp_path):
    run_dir = tmp_path / "two-nodes"
    port = str(_free_port())
    common = [
        "-c",
        str(SMOKE),
        "--nproc",
        "1",
        "--nnodes",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        port,
        "--set",
        "run.max_steps=10",
        "--set",
        "run.eval_interval=10",
    ]
    # Node 1 first: it must not depend on node 0 having created the run directory.
    node1 = start_run(run_dir, *common, "--node-rank", "1")
    node0 = start_run(run_dir, *common, "--node-rank", "0")
    try:
        assert node0.wait(timeout=240) == 0, node0.stderr.read()
        assert node1.wait(timeout=60) == 0, node1.stderr.read()
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
    start = events_of(run_dir, "run_start")[0]
    assert start["env"]["world_size"] == 2
    assert events_of(run_dir, "run_end")[-1]["reason"] == "finished"
    assert len(events_of(run_dir, "metrics")[-1]["rank_work_times"]) == 2
    assert (run_dir / "engine.node1.log").exists()


def test_tiny_model_overfits_a_few_pieces(tmp_path):
    run_dir = tmp_path / "overfit"
    podium(
        "run",
        "-c",
        str(SMOKE),
        "-r",
        str(run_dir),
        "--set",
        "data.max_pieces=3",
        "--set",
        "data.transpose=0",
        "--set",
        "run.max_steps=200",
        "--set",
        "run.log_interval=20",
        "--set",
        "run.eval_interval=1000",
        "--set",
        "checkpoint.interval=0",
        "--set",
        "model.d_model=64",
        "--set",
        "optim.weight_decay=0",
        "--set",
        "batch.micro_batch_size=8",
        check=True,
    )
    metrics = events_of(run_dir, "metrics")
    chance = math.log(events_of(run_dir, "data")[0]["vocab_size"])
    assert metrics[-1]["loss"] < chance / 4, f"loss {metrics[-1]['loss']:.2f} vs chance {chance:.2f}"
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 3


def test_a_killed_launcher_leaves_no_orphaned_training(tmp_path):
    run_dir = tmp_path / "orphan"
    proc = start_run(
        run_dir,
        "-c",
        str(SMOKE),
        "--set",
        "run.max_steps=100000",
        "--set",
        "checkpoint.interval=0",
        "--set",
        "music.enabled=false",
    )
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
    finally:
        proc.kill()
    proc.wait(timeout=30)
    end = wait_until(lambda: events_of(run_dir, "run_end"), 120, "the engine to stop after its launcher died")[-1]
    assert end["reason"] == "stopped" and end["message"] == "stop requested by signal"
