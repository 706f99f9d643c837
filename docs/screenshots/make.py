"""Regenerate the GUI screenshots in this folder (offscreen; no display needed).

    python docs/screenshots/make.py [--real]

Scripted runs (tests/gui/scripted.py) make the dashboard screenshots
deterministic; ``--real`` also runs the engine's 2-rank smoke config and
screenshots that real run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "gui")]

from scripted import write_rollback_run, write_run  # noqa: E402


def append(run_dir: Path, *events: dict) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        for event in events:
            f.write(json.dumps({"v": 1, **event}) + "\n")


def set_lr_from(lines: list[str], step: int, lr: float) -> list[str]:
    """The metrics from ``step`` on as after a set_lr there: the LR (and its peak) at the new value."""
    out = []
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "metrics" and event["step"] >= step:
            event.update(lr=lr, peak_lr=lr)
            line = json.dumps(event) + "\n"
        elif event.get("type") == "metrics":
            event.setdefault("peak_lr", event.get("lr"))
            line = json.dumps(event) + "\n"
        out.append(line)
    return out


def shot(png: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "main.py", *args, "--screenshot", str(HERE / png)],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(HERE / png, f"{(HERE / png).stat().st_size // 1024} KB")


def main() -> int:
    ws = Path(tempfile.mkdtemp(prefix="podium-shots-")) / "runs"
    now = time.time()
    # A run going now: 2,400 of 3,000 steps, a NaN, a loss spike, two commands answered.
    live = write_run(
        ws / "chorales-d256", steps=3000, nan_at=[1710], end=None, t0=now - 2400 * 0.05 - 30, dt=0.5, anomalies=False
    ).root
    lines = (live / "events.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"step": 2410' in line)
    (live / "events.jsonl").write_text("".join(set_lr_from(lines[:cut], 1900, 3e-4)))
    t = now - 2
    append(
        live,
        {
            "type": "anomaly",
            "time": now - 300,
            "step": 1710,
            "kind": "nonfinite_loss",
            "severity": "critical",
            "message": "loss is NaN on rank 1",
            "evidence": {"rank": 1},
            "suggestion": "roll back and lower the LR",
            "action": "rollback",
            "action_result": "restored step 1500",
        },
        {
            "type": "control_ack",
            "time": now - 200,
            "step": 1900,
            "id": "a1",
            "cmd": "set_lr",
            "outcome": "done",
            "reason": "",
            "old_peak_lr": 1e-3,
            "new_peak_lr": 3e-4,
        },
        {
            "type": "control_ack",
            "time": now - 100,
            "step": 2200,
            "id": "a2",
            "cmd": "save_checkpoint",
            "outcome": "done",
            "reason": "",
        },
        {
            "type": "checkpoint",
            "time": now - 99,
            "step": 2200,
            "path": "checkpoints/step-002200",
            "kind": "full",
            "reason": "command",
            "size_bytes": 48_000_000,
        },
        {
            "type": "metrics",
            "time": t,
            "step": 2400,
            "loss": 1.31,
            "lr": 3e-4,
            "peak_lr": 3e-4,
            "grad_norm": 0.9,
            "grad_norm_clipped": 0.9,
            "samples_per_s": 256.0,
            "tokens_per_s": 65536.0,
            "step_time": 0.25,
            "data_wait_frac": 0.02,
            "rank_work_times": [0.25, 0.26],
            "tokens_seen": 2400 * 4096,
            "epoch": 4,
        },
    )
    (live / "engine.log").write_text(
        "".join(f"[rank0] step {s}: loss {1.3 + 1 / s:.4f}\n" for s in range(10, 2401, 10))
    )
    lr_run = write_run(ws / "chorales-d256-lr3e-4", steps=3000, seed=7, t0=now - 7200, dt=0.5, anomalies=False).root
    failed = write_run(ws / "chorales-d512", steps=3000, end=None, t0=now - 9000, dt=0.5).root
    lines = (failed / "events.jsonl").read_text().splitlines(keepends=True)
    (failed / "events.jsonl").write_text("".join(lines[: len(lines) // 3]))
    (failed / "launcher.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 999_999_999, "time": now}))
    (failed / "engine.log").write_text(
        "[rank0] step 990: loss 1.9021\n[rank1] Traceback (most recent call last):\n"
        '[rank1]   File "engine/training/train.py", line 251, in train_step\n'
        "[rank1]     loss.backward()\n[rank1] RuntimeError: CUDA error: an illegal memory access was encountered\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: engine/training/train.py FAILED\n"
    )
    write_run(ws / "bach-baseline", steps=2000, t0=now - 86400, dt=0.5)
    # A NaN at step 125, rolled back to the checkpoint at 100: the undone stretch drawn faded.
    rolled = write_rollback_run(ws / "chorales-rollback", t0=now - 3600).root

    shot("live-light.png", "--open", str(live), "--workspace", str(ws), "--theme", "light")
    baseline = ws / "bach-baseline"
    shot(
        "overlay-dark.png",
        *("--open", str(live), "--open", str(lr_run), "--open", str(baseline)),
        *("--workspace", str(ws), "--theme", "dark"),
    )
    shot("music-light.png", "--open", str(lr_run), "--workspace", str(ws), "--theme", "light", "--dock", "music")
    shot("rollback-light.png", "--open", str(rolled), "--workspace", str(ws), "--theme", "light")
    shot("failed-light.png", "--open", str(failed), "--workspace", str(ws), "--theme", "light", "--dock", "log")
    new_run_dialog(ws, HERE / "new-run.png")
    if "--real" in sys.argv:
        real = ws / "smoke-real"
        subprocess.run(
            [sys.executable, "main.py", "run", "-c", "resources/smoke.yaml", "-r", str(real), "--nproc", "2"],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        shot("real-smoke-light.png", "--open", str(real), "--workspace", str(ws), "--theme", "light")
    return 0


def new_run_dialog(ws: Path, png: Path) -> None:
    from PySide6 import QtWidgets

    import gui  # noqa: F401
    from engine.contract.config import default_config_path
    from gui.models.hardware import Hardware
    from gui.theme import LIGHT
    from gui.widgets.dialogs import NewRunDialog

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    dialog = NewRunDialog(ws, Hardware([], 2, "no NVIDIA driver"), default_config_path())
    dialog.setStyleSheet(LIGHT.style_sheet())
    dialog.overrides.setText("optim.lr=3e-4 run.max_steps=500")
    dialog.nproc.setValue(3)
    dialog.validate()
    dialog.show()
    app.processEvents()
    dialog.grab().save(str(png))
    print(png, f"{png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    sys.exit(main())
