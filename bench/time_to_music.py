"""Time to music: the default config trained headless for a fixed wall time, its samples judged at every evaluation.

    python bench/time_to_music.py [--minutes 30] [--nproc 1] [--set key=value ...] [--run-dir DIR]

Starts ``python main.py run`` on ``resources/default.yaml`` (``--set`` overrides,
e.g. ``run.eval_interval=50`` for a short check), and prints the machine (CPU
model, cores, load at start and end), then at each sampling round: wall time
since start, step, validation loss, the calibrated quality score with its
interval, the share of well-formed samples, the mean memorization, the median
training seconds per step since the previous round and the evaluation's
seconds (validation pass and samples). After
``--minutes`` it sends ``stop`` (a graceful stop with a final checkpoint) and
waits for the run to end; a run that reaches its ``run.max_steps`` first just
ends. The wall time includes data preparation, as for a user's first
``python main.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.contract.commands import send_command  # noqa: E402


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def round_line(event: dict, started: float, evaluation: dict | None, step_times: list[float]) -> str:
    """One sampling round; ``step_times`` are the training seconds per step logged since the previous round."""
    samples = event.get("samples") or []
    valid = [bool((s.get("syntax") or {}).get("valid")) for s in samples]
    low, high = (event.get("quality_interval") or [None, None])[:2]
    copied = (event.get("metrics") or {}).get("memorization")
    evaluation = evaluation or {}
    return (
        f"{(time.time() - started) / 60:6.1f} min  step {event['step']:>6}  "
        f"val_loss {fmt(evaluation.get('val_loss'))}  "
        f"quality {fmt(event.get('quality_score'))} ({fmt(low, '.2f')}-{fmt(high, '.2f')})  "
        f"well-formed {sum(valid)}/{len(valid)}  memorization {fmt(copied, '.0%')}  "
        f"s/step {fmt(statistics.median(step_times) if step_times else None, '.2f')}  "
        f"eval {fmt(evaluation.get('seconds'), '.0f')} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="wall time to train for (default 30)")
    parser.add_argument("--nproc", type=int, default=1, help="processes (default 1, as python main.py on a CPU)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    parser.add_argument("--run-dir", type=Path, help="run directory (default: a new temporary folder)")
    args = parser.parse_args()

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="podium-time-to-music-")) / "run"
    print(f"machine: {machine()}")
    print(f"run: {run_dir} (resources/default.yaml, {args.nproc} process(es), {args.minutes:g} min)", flush=True)
    command = [sys.executable, str(REPO / "main.py"), "run", "-c", str(REPO / "resources" / "default.yaml")]
    # The config's own max_steps stays: its LR schedule is the user's (a run that finishes early just ends).
    command += ["-r", str(run_dir), "--nproc", str(args.nproc), "--no-progress"]
    for override in args.set:
        command += ["--set", override]
    started = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    events = run_dir / "events.jsonl"
    # A round's sample event comes before its eval event (which carries the validation loss).
    offset, pending, stopping, step_times = 0, None, False, []
    while True:
        done = proc.poll() is not None
        if events.exists():
            with events.open() as f:
                f.seek(offset)
                for line in f:
                    if not line.endswith("\n"):
                        break  # a line still being written: read it next time
                    offset += len(line.encode())
                    event = json.loads(line)
                    if event["type"] == "metrics" and event.get("step_time") is not None:
                        step_times.append(event["step_time"])
                    elif event["type"] == "sample":
                        pending = event
                    elif event["type"] == "eval" and pending is not None:
                        print(round_line(pending, started, event, step_times), flush=True)
                        pending, step_times = None, []
                    elif event["type"] == "data":
                        print(f"{(time.time() - started) / 60:6.1f} min  data ready", flush=True)
        if done:
            if pending is not None:
                print(round_line(pending, started, None, step_times), flush=True)
            break
        if not stopping and time.time() - started >= args.minutes * 60 and run_dir.exists():
            send_command(run_dir, "stop")
            stopping = True
            print(f"{(time.time() - started) / 60:6.1f} min  stop sent", flush=True)
        time.sleep(2.0)
    print(f"machine at the end: {machine()}")
    if proc.returncode:
        print(proc.stderr.read()[-2000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
