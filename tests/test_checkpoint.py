"""Checkpoint files in one process: atomic commit, integrity, refusal of pickled code, compression,
archiving, background saving and failed writes. The torchrun scenarios are in test_checkpoint_runs.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.checkpoints import checkpoint, writing
from engine.checkpoints.manager import Saved
from engine.contract.config import CheckpointSection, ConfigError, ModelSection, validate
from engine.contract.manifest import (
    CheckpointInvalid,
    checkpoint_rows,
    newest_valid,
    read_manifest,
    temp_folders,
    verify_checkpoint,
    write_manifest,
)
from engine.training.distributed import Dist
from engine.training.model import MusicTransformer, param_groups
from tests.conftest import REPO


def _trained_parts(seed: int = 0) -> dict:
    """A tiny model after one AdamW step, shaped like the trainer's parts (tied embedding and head)."""
    torch.manual_seed(seed)
    model = MusicTransformer(ModelSection(d_model=32, n_layers=2, n_heads=2), 300, 32)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    model(torch.randint(0, 300, (2, 32))).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_state": {"step": 7, "ranks": [{"rng": checkpoint.rng_state(torch.device("cpu"))}]},
    }


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


@pytest.fixture
def parts():
    return _trained_parts()


@pytest.mark.slow
def test_a_saved_checkpoint_loads_back_exactly_and_lists_every_file(tmp_path, parts):
    path = checkpoint.save(tmp_path, 7, parts, files={"tokenizer.json": b'{"x": 1}'}, meta={"reason": "test"})
    assert path.name == "step-0000007" and not temp_folders(tmp_path)
    manifest = read_manifest(path)
    assert manifest["kind"] == "full" and manifest["step"] == 7 and manifest["reason"] == "test"
    assert set(manifest["files"]) == {"tokenizer.json", "model.pt", "optimizer.pt", "train_state.pt"}
    for name, entry in manifest["files"].items():
        # The hash computed while writing (on a helper thread) is the hash of the bytes on disk.
        assert entry["sha256"] == hashlib.sha256((path / name).read_bytes()).hexdigest()
        assert entry["size"] == (path / name).stat().st_size
    loaded = checkpoint.load(path)
    for name in parts:
        _assert_same(parts[name], loaded[name])
    model = loaded["model"]
    assert model["tok_emb.weight"].data_ptr() == model["head.weight"].data_ptr(), "tied weights must stay one tensor"


def test_a_subset_of_parts_loads_without_the_rest(tmp_path, parts):
    path = checkpoint.save(tmp_path, 7, parts)
    loaded = checkpoint.load(path, parts=("model",))
    assert set(loaded) == {"model", "manifest"}
    with pytest.raises(CheckpointInvalid, match="has no ema"):
        checkpoint.load(path, parts=("ema",))


def _truncate(path):
    model = path / "model.pt"
    model.write_bytes(model.read_bytes()[:-100])
    return "model.pt: size"


def _flip_byte(path):
    model = path / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    return "model.pt: sha256 mismatch"


def _drop_manifest(path):
    (path / "manifest.json").unlink()
    return "manifest.json: missing"


def _garble_manifest(path):
    (path / "manifest.json").write_text('{"step": 20, "files": ')
    return "manifest.json: unreadable"


def _drop_file(path):
    (path / "optimizer.pt").unlink()
    return "optimizer.pt: missing"


@pytest.mark.parametrize("damage", [_truncate, _flip_byte, _drop_manifest, _garble_manifest, _drop_file])
def test_a_damaged_checkpoint_is_never_loaded_and_resume_falls_back(tmp_path, parts, damage):
    older = checkpoint.save(tmp_path, 10, parts)
    newer = checkpoint.save(tmp_path, 20, parts)
    expected = damage(newer)
    with pytest.raises(CheckpointInvalid, match=expected):
        checkpoint.load(newer)
    chosen, rejected = newest_valid(tmp_path)
    assert chosen == older
    assert [p for p, _ in rejected] == [newer] and expected in rejected[0][1]


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the raw pickle's protocol
@pytest.mark.parametrize("container", ["torch zip", "raw pickle"])
def test_a_file_carrying_pickled_code_is_refused_and_the_code_never_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # the payload is live: unpickling it does create the file
    assert marker.exists()
    marker.unlink()
    folder = tmp_path / "checkpoints" / "step-0000001"
    if container == "torch zip":
        # The attacker's manifest is perfect, hashes included: integrity is not the defence here.
        checkpoint.save(folder.parent, 1, {"model": {"w": torch.zeros(2), "evil": _Payload(marker)}})
        assert not marker.exists()
    else:
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(payload)
        write_manifest(
            folder,
            {
                "step": 1,
                "kind": "full",
                "files": {
                    "model.pt": {"part": "model", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
                },
            },
        )
    verify_checkpoint(folder)
    with pytest.raises(CheckpointInvalid, match="refused to load"):
        checkpoint.load(folder)
    assert not marker.exists()


def test_resume_passes_over_a_newest_checkpoint_that_verifies_but_carries_pickled_code(tmp_path, parts):
    manager, events = _manager(tmp_path)
    older = checkpoint.save(manager.directory, 10, parts)
    marker = tmp_path / "pwned"
    # Its hashes are right (the attacker wrote the manifest too); weights_only refuses it.
    newer = checkpoint.save(manager.directory, 20, {**parts, "train_state": {"evil": _Payload(marker)}})
    verify_checkpoint(newer)
    assert manager.resume_point(None) == (older, "resume")
    skipped = [e for e in events if e["type"] == "error" and e["where"] == "resume"]
    assert [e["path"] for e in skipped] == [str(newer)] and "refused to load" in skipped[0]["message"]
    assert not marker.exists()


def test_a_file_linked_from_outside_the_checkpoint_is_refused(tmp_path, parts):
    folder = checkpoint.save(tmp_path / "run" / "checkpoints", 10, parts)
    outside = tmp_path / "elsewhere.pt"
    (folder / "model.pt").rename(outside)
    (folder / "model.pt").symlink_to(outside)
    with pytest.raises(CheckpointInvalid, match="model.pt: a symbolic link"):
        checkpoint.load(folder)
    with pytest.raises(CheckpointInvalid, match="model.pt: a symbolic link"):
        checkpoint.load(folder, parts=("model",))


def test_resume_passes_over_a_step_folder_linked_from_outside_the_run(tmp_path, parts):
    manager, events = _manager(tmp_path / "run")
    older = checkpoint.save(manager.directory, 10, parts)
    outside = checkpoint.save(tmp_path / "other-run" / "checkpoints", 20, parts)
    (manager.directory / outside.name).symlink_to(outside, target_is_directory=True)
    assert manager.resume_point(None) == (older, "resume")
    skipped = [e for e in events if e["type"] == "error" and e["where"] == "resume"]
    assert [e["path"] for e in skipped] == [str(manager.directory / outside.name)]
    assert "a symbolic link" in skipped[0]["message"] and str(outside) in skipped[0]["message"]


def test_zstd_compression_round_trips_and_the_manifest_records_the_ratio(tmp_path, parts):
    path = checkpoint.save(tmp_path, 3, parts, compression="zstd", level=3)
    manifest = read_manifest(path)
    stored = {n: e for n, e in manifest["files"].items() if n.endswith(".pt.zst")}
    assert set(stored) == {"model.pt.zst", "optimizer.pt.zst", "train_state.pt.zst"}
    summary = manifest["compression"]
    assert summary["codec"] == "zstd" and summary["stored_bytes"] == sum(e["size"] for e in stored.values())
    assert summary["raw_bytes"] == sum(e["raw_size"] for e in stored.values())
    assert summary["ratio"] == pytest.approx(summary["raw_bytes"] / summary["stored_bytes"], rel=1e-3)
    loaded = checkpoint.load(path)
    for name in parts:
        _assert_same(parts[name], loaded[name])


def test_archiving_keeps_half_precision_weights_only_and_stays_loadable(tmp_path, parts):
    path = checkpoint.save(tmp_path, 5, parts, files={"tokenizer.json": b"{}"})
    full_size = sum(e["size"] for e in read_manifest(path)["files"].values())
    freed = checkpoint.archive(path, "fp16")
    manifest = verify_checkpoint(path)
    assert manifest["kind"] == "weights" and manifest["weights_dtype"] == "fp16"
    assert sorted(os.listdir(path)) == ["manifest.json", "model.fp16.pt", "tokenizer.json"]
    assert freed == full_size - sum(e["size"] for e in manifest["files"].values())
    model_bytes = sum(t.numel() * 4 for k, t in parts["model"].items() if k != "head.weight")
    assert manifest["files"]["model.fp16.pt"]["size"] < 0.6 * model_bytes, "tied weights saved twice, or not halved"
    loaded = checkpoint.load(path)
    assert set(loaded) == {"model", "manifest"}
    net = MusicTransformer(ModelSection(d_model=32, n_layers=2, n_heads=2), 300, 32)
    net.load_state_dict(loaded["model"])  # fp16 weights load into an fp32 model
    for key, value in net.state_dict().items():
        assert torch.allclose(value, parts["model"][key], atol=1e-3, rtol=1e-3)


def test_a_failed_archive_leaves_the_full_checkpoint_valid(tmp_path, parts, monkeypatch):
    path = checkpoint.save(tmp_path, 5, parts)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writing, "_write_part", full_disk)
    with pytest.raises(OSError):
        checkpoint.archive(path, "fp16")
    assert verify_checkpoint(path)["kind"] == "full"
    _assert_same(parts["model"], checkpoint.load(path)["model"])


def test_host_copy_is_a_snapshot_that_keeps_tied_weights_tied_and_reuses_its_buffers(parts):
    copier = checkpoint.HostCopier()
    snapshot, ready = copier.copy(parts)
    ready()
    _assert_same(parts, snapshot)
    assert snapshot["model"]["tok_emb.weight"].data_ptr() == snapshot["model"]["head.weight"].data_ptr()
    parts["model"]["tok_emb.weight"].add_(1.0)
    assert not torch.equal(parts["model"]["tok_emb.weight"], snapshot["model"]["tok_emb.weight"])
    again, _ = copier.copy(parts)
    # The next save's copy lands in the same buffers (the previous write has finished by then).
    assert again["model"]["ln_f.weight"].data_ptr() == snapshot["model"]["ln_f.weight"].data_ptr()
    _assert_same(parts, again)


def test_rng_state_restores_torch_numpy_and_python_streams():
    device = torch.device("cpu")
    state = checkpoint.rng_state(device)
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    checkpoint.set_rng_state(state, device)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def _manager(tmp_path, on_saved=None, **options) -> tuple[checkpoint.CheckpointManager, list]:
    events = []
    dist = Dist(0, 1, 0, 1, 0, torch.device("cpu"), "gloo")
    manager = checkpoint.CheckpointManager(
        tmp_path / "checkpoints",
        CheckpointSection(**options),
        dist,
        lambda type_, step, **p: events.append({"type": type_, "step": step, **p}),
        on_saved=on_saved,
    )
    return manager, events


def test_the_checkpoint_hook_hears_of_each_committed_save_once_after_its_events(tmp_path, parts, monkeypatch):
    heard = []
    manager, events = _manager(
        tmp_path,
        on_saved=lambda saved: heard.append((saved, [e["type"] for e in events], saved.path.is_dir())),
        async_save=True,
        keep_last=1,
        keep_best=0,
    )
    manager.save(10, "interval", lambda: parts, meta={}, metric=None, files={})
    assert heard == []  # written in the background: not yet agreed
    manager.save(20, "command", lambda: parts, meta={}, metric=None, files={}, wait=True)
    first, second = heard
    assert first == (Saved(10, tmp_path / "checkpoints" / "step-0000010", "interval", True), ["checkpoint"], True)
    # The second save's retention removed step 10 before the hook heard of step 20.
    assert second == (
        Saved(20, tmp_path / "checkpoints" / "step-0000020", "command", False),
        ["checkpoint", "checkpoint", "checkpoint_removed"],
        True,
    )
    _full_disk_at(monkeypatch, 30)
    assert not manager.save(30, "final", lambda: parts, meta={}, metric=None, files={}, wait=True)["ok"]
    assert len(heard) == 2  # a failed save is no checkpoint


def test_a_background_save_writes_the_state_of_its_step_while_the_caller_goes_on(tmp_path, parts):
    manager, events = _manager(tmp_path, async_save=True, keep_best=0)
    assert manager.save(10, "interval", lambda: parts, meta={}, metric=None, files={}) is None
    assert manager.in_flight and manager.in_flight["background"]
    before = parts["model"]["ln_f.weight"].clone()
    parts["model"]["ln_f.weight"].add_(1.0)  # training goes on while the writer works
    outcome = manager.settle()
    assert outcome["ok"] and [e["type"] for e in events] == ["checkpoint"] and events[0]["background"]
    assert torch.equal(checkpoint.load(tmp_path / "checkpoints" / "step-0000010")["model"]["ln_f.weight"], before)
    assert manager.save(20, "final", lambda: parts, meta={}, metric=None, files={}, wait=True)["ok"]
    assert [s.step for s in manager.history] == [10, 20]


def test_a_failed_write_keeps_earlier_checkpoints_and_reports_the_error(tmp_path, parts, monkeypatch):
    manager, events = _manager(tmp_path, keep_last=1, keep_best=0, async_save=False)
    assert manager.save(10, "interval", lambda: parts, meta={}, metric=None, files={})["ok"]
    real_fsync = _full_disk_at(monkeypatch, 20)
    outcome = manager.save(20, "interval", lambda: parts, meta={}, metric=None, files={})
    assert not outcome["ok"] and outcome["errno"] == "ENOSPC"
    assert "No space left on device" in manager.last_failure
    error = events[-1]
    assert error["type"] == "error" and error["where"] == "checkpoint" and not error["fatal"] and error["step"] == 20
    assert "earlier checkpoints are intact" in error["message"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000010"]
    verify_checkpoint(tmp_path / "checkpoints" / "step-0000010")
    assert [s.step for s in manager.history] == [10], "keep_last=1 must not have removed step 10 for a failed save"
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert manager.save(30, "interval", lambda: parts, meta={}, metric=None, files={})["ok"]
    assert manager.last_failure is None
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000030"]


def _full_disk_at(monkeypatch, step: int):
    """Make every fsync of the save of ``step`` fail with ENOSPC; returns the real fsync."""
    real_fsync = os.fsync

    def full_disk(fd):
        if f"step-{step:07d}" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    return real_fsync


def test_a_failed_background_write_is_reported_when_the_next_save_settles_it(tmp_path, parts, monkeypatch):
    manager, events = _manager(tmp_path, keep_last=1, keep_best=0, async_save=True)
    _full_disk_at(monkeypatch, 10)
    assert manager.save(10, "interval", lambda: parts, meta={}, metric=None, files={}) is None
    # The next save first settles the failed one: reported with its own step, and (continue) saved anew.
    outcome = manager.save(20, "final", lambda: parts, meta={}, metric=None, files={}, wait=True)
    assert outcome["ok"] and manager.last_failure is None
    error = next(e for e in events if e["type"] == "error")
    assert error["step"] == 10 and error["errno"] == "ENOSPC" and not error["fatal"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000020"]

    stopping, events = _manager(tmp_path / "stop", keep_best=0, async_save=True, on_error="stop")
    stopping.save(10, "interval", lambda: parts, meta={}, metric=None, files={})
    outcome = stopping.save(20, "interval", lambda: parts, meta={}, metric=None, files={})
    # on_error=stop: the failure comes back instead of a new save, and nothing more is written.
    assert outcome is not None and not outcome["ok"] and outcome["step"] == 10 and stopping.in_flight is None
    assert not (tmp_path / "stop" / "checkpoints").exists() or not any((tmp_path / "stop" / "checkpoints").iterdir())
    assert next(e for e in events if e["type"] == "error")["fatal"]


def test_a_save_that_fails_for_another_reason_than_the_disk_stops_the_run_with_its_traceback(tmp_path):
    manager, events = _manager(tmp_path, keep_best=0, async_save=True)
    manager.save(10, "interval", lambda: {"model": {"f": lambda: 0}}, meta={}, metric=None, files={})
    with pytest.raises(RuntimeError, match="checkpoint at step 10 failed: .*lambda"):
        manager.settle()
    error = events[-1]
    assert error["type"] == "error" and error["fatal"] and "Traceback" in error["traceback"]
    assert not temp_folders(tmp_path / "checkpoints")


def test_retention_runs_after_each_commit_and_every_removal_is_an_event(tmp_path, parts):
    manager, events = _manager(
        tmp_path, interval=10, keep_last=1, keep_best=1, milestone_every=20, weights_dtype="fp16", async_save=False
    )
    for step, loss in ((10, 3.0), (20, 2.0), (30, float("nan")), (40, 2.5)):
        manager.save(step, "interval", lambda: parts, meta={"metrics": {"val_loss": loss}}, metric=loss, files={})
    folders = {p.name: read_manifest(p)["kind"] for p in sorted((tmp_path / "checkpoints").iterdir())}
    # 10: superseded; 20: best and a milestone, archived; 30: NaN, superseded; 40: the last full one.
    assert folders == {"step-0000020": "weights", "step-0000040": "full"}
    removed = [e for e in events if e["type"] == "checkpoint_removed"]
    assert [(e["path"].rsplit("/", 1)[1], e["scope"]) for e in removed] == [
        ("step-0000010", "all"),
        ("step-0000020", "training_state"),
        ("step-0000030", "all"),
    ]
    assert all(e["reason"] and e["freed_bytes"] > 0 for e in removed)
    assert "best 1 by val_loss" in removed[1]["reason"] and "milestone" in removed[1]["reason"]


def test_retention_never_writes_into_a_step_folder_linked_from_outside_the_run(tmp_path, parts):
    # Step 10 is a milestone: once superseded, retention would archive it (rewrite it as weights only).
    manager, events = _manager(
        tmp_path / "run", interval=10, keep_last=1, keep_best=0, milestone_every=10, async_save=False
    )
    outside = checkpoint.save(tmp_path / "other-run" / "checkpoints", 10, parts)
    files = sorted(p.name for p in outside.iterdir())
    manager.directory.mkdir(parents=True)
    (manager.directory / outside.name).symlink_to(outside, target_is_directory=True)
    manager.adopt(None)
    manager.save(20, "interval", lambda: parts, meta={}, metric=None, files={})
    # The link is never a checkpoint of this run: listed as invalid with why, and nothing is written through it.
    listed = {row["name"]: row["integrity"] for row in checkpoint_rows(manager.directory)}
    assert "symbolic link" in listed[outside.name]
    assert not [e for e in events if e["type"] == "checkpoint_removed" and outside.name in e["path"]]
    assert verify_checkpoint(outside)["kind"] == "full" and sorted(p.name for p in outside.iterdir()) == files


def test_config_changes_name_each_changed_field():
    assert checkpoint.config_changes({"optim": {"lr": 1e-3, "beta1": 0.9}}, {"optim": {"lr": 3e-4, "beta1": 0.9}}) == {
        "optim.lr": [1e-3, 3e-4]
    }


def test_a_different_architecture_is_named_precisely(parts):
    other = MusicTransformer(ModelSection(d_model=64, n_layers=2, n_heads=2), 300, 32).state_dict()
    with pytest.raises(
        CheckpointInvalid,
        match=r"ckpt: the model architecture differs: blocks.0.attn.proj.bias: "
        r"\(32,\) here, \(64,\) expected; .* and 23 more",
    ):
        checkpoint.check_compatible(parts["model"], other, "ckpt")


def test_checkpoint_options_are_validated_with_their_ranges():
    with pytest.raises(ConfigError, match="milestone_every .* must be a multiple of interval"):
        validate({"checkpoint": {"interval": 100, "milestone_every": 150}})
    with pytest.raises(ConfigError, match="checkpoint.compression_level"):
        validate({"checkpoint": {"compression_level": 40}})
    with pytest.raises(ConfigError, match="run.max_restarts"):
        validate({"run": {"max_restarts": -1}})
    assert validate({"checkpoint": {"interval": 100, "milestone_every": 1000}}).checkpoint.milestone_every == 1000


BLOCK_TORCH = """
import runpy, sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None
sys.meta_path.insert(0, BlockTorch())
sys.argv = ["main.py", *sys.argv[1:]]
try:
    runpy.run_path("main.py", run_name="__main__")
finally:
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
"""


def _without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_list_and_verify_run_with_torch_blocked_and_name_the_bad_file(tmp_path, parts):
    run_dir = tmp_path / "run"
    checkpoint.save(run_dir / "checkpoints", 10, parts, meta={"metrics": {"val_loss": 4.25}})
    bad = checkpoint.save(run_dir / "checkpoints", 20, parts, compression="zstd")
    listed = _without_torch("checkpoints", "list", str(run_dir))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert (
        "step-0000010" in lines[1] and "full" in lines[1] and "val_loss=4.2500" in lines[1] and lines[1].endswith("ok")
    )
    assert "step-0000020" in lines[2] and lines[2].endswith("ok")
    ok = _without_torch("checkpoints", "verify", str(run_dir))
    assert ok.returncode == 0, ok.stderr
    _flip_byte_named(bad / "optimizer.pt.zst")
    failed = _without_torch("checkpoints", "verify", str(run_dir))
    assert failed.returncode == 1 and f"{bad / 'optimizer.pt.zst'}: sha256 mismatch" in failed.stdout
    listed = _without_torch("checkpoints", "list", str(run_dir))
    assert listed.returncode == 0 and "INVALID" in listed.stdout.splitlines()[2]
    single = _without_torch("checkpoints", "verify", str(bad))
    assert single.returncode == 1 and "optimizer.pt.zst" in single.stdout
    # The app's browser on a remote workspace reads the same listing as JSON, sizes only (--fast).
    rows = json.loads(_without_torch("checkpoints", "list", "--json", "--fast", str(run_dir)).stdout)
    assert [(r["name"], r["folder"], r["step"], r["integrity"]) for r in rows] == [
        ("step-0000010", "checkpoints", 10, "sizes ok"),
        ("step-0000020", "checkpoints", 20, "sizes ok"),
    ]
    assert rows[0]["metrics"]["val_loss"] == 4.25


def _flip_byte_named(path):
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_is_plain_json_a_gui_can_read(tmp_path, parts):
    path = checkpoint.save(tmp_path, 1, parts, meta={"metrics": {"val_loss": 1.5}, "versions": checkpoint.versions()})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["manifest_version"] == 1 and manifest["versions"]["torch"] == torch.__version__
