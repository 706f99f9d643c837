"""Hyperparameter studies: space validation, the controller's bookkeeping, and real trials.

Tests about the controller's logic (best trial, failures, resume, workers,
stop) run trials through a stand-in launcher whose metric follows the
parameters by a known formula; tests about the integration (a smoke study,
pruning that stops a run, a real failure) run the real engine.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from engine.contract import search_space
from engine.contract.search_space import SpaceError
from engine.contract.studies import study_dir
from engine.launcher.launch import UsageError
from engine.studies.hpo import Controller, StudyOptions
from tests.conftest import REPO, SMOKE, podium
from tests.helpers import events_of, wait_until

# The stand-in for `main.py run`: final val_loss = (log10(lr) + 2.5)^2 + 0.1 * n_layers, reached after
# FAKE_STEPS evaluations that fall towards it; obeys a stop command; model.dropout=0.3 crashes it.
FAKE_TRIAL = """
import json, math, os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["PODIUM_REPO"])
import yaml
from engine.contract.commands import ControlInbox
from engine.contract.events import EventWriter

args = sys.argv[1:]
run_dir = Path(args[args.index("-r") + 1])
params = {}
for i, a in enumerate(args):
    if a == "--set":
        key, _, value = args[i + 1].partition("=")
        params[key] = yaml.safe_load(value)
steps, delay = int(os.environ.get("FAKE_STEPS", "3")), float(os.environ.get("FAKE_DELAY", "0.01"))
final = (math.log10(float(params.get("optim.lr", 0.01))) + 2.5) ** 2 + 0.1 * int(params.get("model.n_layers", 1))
(run_dir / "launcher.json").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
events = EventWriter(run_dir / "events.jsonl")
events.emit("run_start", 0, model_parameters=1000 * int(params.get("model.n_layers", 1)), total_steps=steps)
if params.get("model.dropout") == 0.3:
    print("simulated crash: illegal memory access", flush=True)
    sys.exit(3)
inbox = ControlInbox(run_dir / "control.jsonl")
for step in range(1, steps + 1):
    time.sleep(delay)
    if any(c.get("cmd") == "stop" for c in inbox.poll()):
        events.emit("run_end", step, reason="stopped", message="stopped by command")
        sys.exit(0)
    events.emit("metrics", step, loss=final + 1, tokens_seen=100 * step)
    events.emit("eval", step, val_loss=final + (steps - step), quality_score=-final)
events.emit("run_end", steps, reason="finished", message="finished")
"""

# A controller process that launches the stand-in instead of `main.py run`.
DRIVER = """
import json, sys
from pathlib import Path
from engine.studies.hpo import Controller, StudyOptions
from engine.studies.storage import Heartbeat
fake = Path(sys.argv[1])
paths = ("workspace", "base", "space")
given = json.loads(sys.argv[2])
beat = Heartbeat(**given.pop("heartbeat")) if "heartbeat" in given else None
opts = StudyOptions(heartbeat=beat, **{k: Path(v) if k in paths else v for k, v in given.items()})
command = lambda base, run_dir, nproc, overrides: [sys.executable, str(fake), "-r", str(run_dir)] + [
    x for o in overrides for x in ("--set", o)]
sys.exit(Controller(opts, command=command).run())
"""

SPACE_2D = (
    "optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\nmodel.n_layers: {type: int, low: 1, high: 2}\n"
)
GRID_6 = "optim.lr: {type: categorical, choices: [0.001, 0.003, 0.03]}\nmodel.n_layers: {type: int, low: 1, high: 2}\n"


def known_value(params: dict) -> float:
    return (math.log10(params["optim.lr"]) + 2.5) ** 2 + 0.1 * params["model.n_layers"]


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "fake_trial.py"
    path.write_text(FAKE_TRIAL)
    monkeypatch.setenv("PODIUM_REPO", str(REPO))
    return path


def fake_command(fake: Path):
    return lambda base, run_dir, nproc, overrides: (
        [sys.executable, str(fake), "-r", str(run_dir)] + [x for o in overrides for x in ("--set", o)]
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run_controller(tmp_path: Path, fake: Path, space: str, **kw) -> tuple[int, list[str]]:
    return run_controller_with(tmp_path, fake, SMOKE, space, **kw)


def run_controller_with(tmp_path: Path, fake: Path, base: Path, space: str, **kw) -> tuple[int, list[str]]:
    lines: list[str] = []
    opts = StudyOptions(workspace=tmp_path / "ws", base=base, space=write(tmp_path / "space.yaml", space), **kw)
    code = Controller(opts, command=fake_command(fake), out=lines.append).run()
    return code, lines


def load(tmp_path: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir(tmp_path / "ws", name) / "journal.log"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def show_json(workspace: Path, name: str, *extra: str) -> dict:
    result = podium("hpo", "show", "--study", name, "--workspace", str(workspace), "--json", *extra, check=True)
    return json.loads(result.stdout)


def start_driver(tmp_path: Path, fake: Path, env: dict | None = None, **opts) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    full_env = dict(os.environ, PYTHONPATH=str(REPO), PODIUM_REPO=str(REPO), **(env or {}))
    return subprocess.Popen(
        [
            sys.executable,
            str(driver),
            str(fake),
            json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in opts.items()}),
        ],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# ------------------------------------------------------------------ the space


def test_space_file_parses_kinds_scales_and_the_nested_form():
    space = search_space.parse(
        textwrap.dedent("""\
        optim.lr: {type: float, low: 1e-4, high: 3.0e-2, log: true}
        model:
          n_layers: {type: int, low: 1, high: 4, step: 1}
          dropout: {type: float, low: 0.0, high: 0.3, step: 0.1}
        tokenizer.kind: {type: categorical, choices: [REMI, TSD]}
        """),
        yaml.safe_load(SMOKE.read_text()),
    )
    by_name = {p.name: p for p in space.params}
    assert list(by_name) == ["optim.lr", "model.n_layers", "model.dropout", "tokenizer.kind"]
    assert by_name["optim.lr"].low == 1e-4 and by_name["optim.lr"].log  # "1e-4" is text to YAML 1.1; read as the number
    assert by_name["model.n_layers"].line == 3
    assert by_name["model.dropout"].grid_values() == [0.0, 0.1, 0.2, 0.3]
    assert by_name["optim.lr"].grid_values() is None and space.grid() is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "optim.lrr: {type: float, low: 0.001, high: 0.01}",
            "line 1, optim.lrr: unknown key 'lrr' in optim; valid keys: lr,",
        ),
        (
            "optim.lr: {type: float, low: 0.001, high: 2.0}",
            "line 1, optim.lr: high 2.0 is rejected by the config: optim.lr: 2.0 is not valid",
        ),
        (
            "model.n_layers: {type: float, low: 1, high: 3}",
            "line 1, model.n_layers: the field holds an integer; use type: int",
        ),
        ("optim.lr: {type: float, low: 0.0, high: 0.1, log: true}", "a log-scale range must start above 0"),
        ("optim.lr: {type: float, low: 0.001, high: 0.1, log: true, step: 0.01}", "log and step cannot be combined"),
        ("model.dropout: {type: float, low: 0.0, high: 0.25, step: 0.1}", "use high: 0.2 or 0.3"),
        (
            "model.n_heads: {type: int, low: 2, high: 6, step: 2}",
            "high 6 is rejected by the config: model: n_heads (6) must divide d_model (32)",
        ),
        ("tokenizer.kind: {type: categorical, choices: [REMI, ABC]}", "choice 'ABC' is rejected by the config"),
        (
            "run.device: {type: int, low: 0, high: 1}",
            "the field takes one of 'auto', 'cpu', 'cuda'; use type: categorical",
        ),
        ("optim.lr: {type: categorical, choices: [0.01]}", "choices must be a list of at least two values"),
        ("optim.lr: {type: float, low: 0.1, high: 0.01}", "low (0.1) must be below high (0.01)"),
        (
            "optim.lr: {type: uniform, low: 0.1, high: 0.01}",
            "type 'uniform' is not valid; use one of float, int, categorical",
        ),
        ("optim.lr: {type: float, low: 0.01, high: 0.1, scale: log}", "unknown field(s) scale for type float"),
        ("optim: 3", "line 1, optim: not a config key; write section.key"),
        ("optim.lr: [1, 2", "line 1, column 16: YAML syntax error"),
        ("", "the space is empty"),
    ],
)
def test_invalid_space_is_rejected_naming_the_line_and_key(text, expected):
    with pytest.raises(SpaceError) as err:
        search_space.parse(text, yaml.safe_load(SMOKE.read_text()))
    assert expected in str(err.value)


def test_grid_search_needs_discrete_values_and_valid_points():
    base = yaml.safe_load(SMOKE.read_text())
    with pytest.raises(SpaceError, match="line 1, optim.lr: grid search needs discrete values"):
        search_space.parse("optim.lr: {type: float, low: 0.001, high: 0.01}", base, sampler="grid")
    # With d_model 48 in the base every single value is valid; 3 heads do not divide 32, so one grid point is not.
    base["model"]["d_model"] = 48
    with pytest.raises(SpaceError, match=r"grid point \{model.d_model: 32, model.n_heads: 3\} is rejected"):
        search_space.parse(
            "model.d_model: {type: categorical, choices: [48, 32]}\n"
            "model.n_heads: {type: categorical, choices: [2, 3]}",
            base,
            sampler="grid",
        )


def test_batch_sizes_are_checked_against_the_trials_process_count():
    base = yaml.safe_load(SMOKE.read_text())
    text = "batch.global_batch_size: {type: categorical, choices: [8, 12]}"  # micro-batches of 4
    assert search_space.parse(text, base, nproc=1)
    with pytest.raises(
        SpaceError, match=r"choice 12 is rejected by the config: .* 4 does not divide the 6 sequences per rank"
    ):
        search_space.parse(text, base, nproc=2)


@pytest.mark.parametrize("value", [1e-05, 0.003, 3.0, 1e20, 7, True, None, "REMI", "true", "1e-4"])
def test_sampled_values_survive_the_trip_through_set(value):
    from engine.contract.config import parse_yaml

    assert parse_yaml(search_space.yaml_scalar(value)) == value


@pytest.mark.slow
def test_invalid_space_exits_2_before_anything_is_created(tmp_path):
    space = write(
        tmp_path / "space.yaml",
        "optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\nmodel.n_layer: {type: int, low: 1, high: 3}\n",
    )
    result = podium(
        "hpo",
        "-c",
        str(SMOKE),
        "--space",
        str(space),
        "--trials",
        "2",
        "--study",
        "bad",
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert result.returncode == 2
    assert "line 2, model.n_layer: unknown key 'n_layer' in model" in result.stderr
    assert not (tmp_path / "ws").exists()


# ------------------------------------------------------- the controller's bookkeeping


@pytest.mark.slow
@pytest.mark.parametrize(
    "direction, metric, best_lr",
    [
        ("minimize", "val_loss", 0.003),  # known values: 0.0005 + 0.1 n at lr 0.003, 0.25 at 0.001, 0.96 at 0.03
        ("maximize", "val_loss", 0.03),
        ("maximize", "quality_score", 0.003),  # quality = -val_loss: its maximum is the loss's minimum
    ],
)
def test_best_trial_respects_direction_and_metric(tmp_path, fake, direction, metric, best_lr):
    code, _ = run_controller(
        tmp_path,
        fake,
        GRID_6,
        study="known",
        trials=6,
        sampler="grid",
        pruner="none",
        direction=direction,
        metric=metric,
    )
    assert code == 0
    snap = show_json(tmp_path / "ws", "known")
    assert snap["counts"] == {"COMPLETE": 6}
    sign = -1.0 if metric == "quality_score" else 1.0
    for trial in snap["trials"]:
        assert trial["value"] == pytest.approx(sign * known_value(trial["params"]))
        assert trial["user_attrs"]["value"] == trial["value"]
        assert Path(trial["run_dir"]).name == f"trial-{trial['number']:04d}"
    values = [t["value"] for t in snap["trials"]]
    expected = min(values) if direction == "minimize" else max(values)
    assert snap["best"]["value"] == expected
    assert snap["best"]["params"] == {"optim.lr": best_lr, "model.n_layers": 1 if best_lr == 0.003 else 2}
    text = podium("hpo", "show", "--study", "known", "--workspace", str(tmp_path / "ws"), check=True).stdout
    assert f"best trial {snap['best']['number']}: {metric} {expected:.6g}" in text
    assert f"optim.lr = {best_lr}" in text and f"run dir: {snap['best']['run_dir']}" in text


@pytest.mark.slow
def test_failing_trials_are_recorded_with_their_reason(tmp_path, fake):
    space = "model.dropout: {type: categorical, choices: [0.3, 0.0]}\n"
    code, lines = run_controller(tmp_path, fake, space, study="crash", trials=2, sampler="grid", pruner="none")
    trials = {t.params["model.dropout"]: t for t in load(tmp_path, "crash").trials}
    crashed, fine = trials[0.3], trials[0.0]
    assert crashed.state == optuna.trial.TrialState.FAIL
    assert crashed.user_attrs["reason"] == "the launcher exited with code 3 without ending the run"
    assert crashed.user_attrs["exit_code"] == 3 and "illegal memory access" in crashed.user_attrs["log_tail"]
    assert fine.state == optuna.trial.TrialState.COMPLETE and code == 0
    # A metric the runs never report is a failure with the fields they do report, not a silent zero.
    code, _ = run_controller(tmp_path, fake, GRID_6, study="nometric", trials=1, sampler="grid", metric="bleu")
    (trial,) = load(tmp_path, "nometric").trials
    assert trial.state == optuna.trial.TrialState.FAIL and code == 1
    assert trial.user_attrs["reason"] == "the run reported no 'bleu' (eval fields: quality_score, val_loss)"


@pytest.mark.slow
def test_a_real_failing_run_is_failed_with_the_engines_message(tmp_path):
    empty = tmp_path / "no-midi"
    empty.mkdir()
    data = yaml.safe_load(SMOKE.read_text())
    data["data"].update(source="midi_dir", path=str(empty))
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(data))
    space = write(tmp_path / "space.yaml", "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    result = podium(
        "hpo",
        "-c",
        str(base),
        "--space",
        str(space),
        "--trials",
        "1",
        "--study",
        "nodata",
        "--workspace",
        str(tmp_path / "ws"),
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (trial,) = show_json(tmp_path / "ws", "nodata")["trials"]
    assert trial["state"] == "FAIL" and "no-midi" in trial["reason"] and trial["user_attrs"]["run_end"] == "failed"
    assert f"trial 0 failed: {trial['reason']}" in result.stdout


@pytest.mark.slow
def test_resuming_with_another_space_or_direction_is_refused(tmp_path, fake):
    run_controller(tmp_path, fake, GRID_6, study="fixed", trials=1, sampler="grid")
    with pytest.raises(UsageError, match="its space differs"):
        run_controller(tmp_path, fake, SPACE_2D, study="fixed", trials=2, sampler="tpe")
    with pytest.raises(UsageError, match="it minimizes; pass --direction minimize"):
        run_controller(tmp_path, fake, GRID_6, study="fixed", trials=2, sampler="grid", direction="maximize")
    missing = podium("hpo", "show", "--study", "nope", "--workspace", str(tmp_path / "ws"))
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr and "studies in" in missing.stderr


@pytest.mark.slow
def test_a_study_resumes_after_its_controller_is_killed(tmp_path, fake):
    opts = dict(
        study="resume",
        workspace=tmp_path / "ws",
        base=SMOKE,
        space=write(tmp_path / "space.yaml", SPACE_2D),
        trials=3,
        pruner="none",
        seed=3,
    )
    first = start_driver(tmp_path, fake, env={"FAKE_STEPS": "100000", "FAKE_DELAY": "0.05"}, **opts)
    run_dir = study_dir(tmp_path / "ws", "resume") / "trial-0000"
    wait_until(
        lambda: len(events_of(run_dir, "eval")) >= 2 if (run_dir / "events.jsonl").exists() else False,
        60,
        "the first trial's evaluations",
    )
    trial_pid = json.loads((run_dir / "launcher.json").read_text())["pid"]
    first.kill()
    first.wait(10)
    # The trial's launcher dies with its controller (PR_SET_PDEATHSIG): no orphan keeps training.
    wait_until(lambda: not Path(f"/proc/{trial_pid}").exists() or _zombie(trial_pid), 30, "the orphaned trial to end")
    second = start_driver(tmp_path, fake, **opts)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    trials = load(tmp_path, "resume").trials
    lost = trials[0]
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["requeued"] is True
    assert "its controller (pid" in lost.user_attrs["reason"] and "died while it ran" in lost.user_attrs["reason"]
    retry = trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == lost.params
    assert [t.state for t in trials[1:]] == [optuna.trial.TrialState.COMPLETE] * 3  # the study's 3 trials, then done
    assert "trial 0 was left running by a dead controller: marked failed and queued again" in out


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_two_workers_share_a_grid_study_without_duplicate_points(tmp_path, fake):
    opts = dict(
        study="grid2",
        workspace=tmp_path / "ws",
        base=SMOKE,
        space=write(tmp_path / "space.yaml", GRID_6),
        trials=10,
        sampler="grid",
        pruner="none",
    )
    env = {"FAKE_STEPS": "10", "FAKE_DELAY": "0.1"}  # a second per trial: both workers are up long before the end
    workers = [start_driver(tmp_path, fake, env=env, **opts) for _ in range(2)]
    outputs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = load(tmp_path, "grid2").trials
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(trials) == 6 and len(set(points)) == 6, points
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for out in outputs:
        assert "every point of the 6-point grid has its trial" in out
    # Both workers ran trials: the study really was shared.
    assert all("started" in out for out in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop file", "SIGINT"])
def test_stopping_a_study_stops_its_running_trial_and_queues_it_again(tmp_path, fake, how):
    opts = dict(
        study="halt",
        workspace=tmp_path / "ws",
        base=SMOKE,
        space=write(tmp_path / "space.yaml", SPACE_2D),
        trials=4,
        pruner="none",
    )
    worker = start_driver(tmp_path, fake, env={"FAKE_STEPS": "100000", "FAKE_DELAY": "0.05"}, **opts)
    run_dir = study_dir(tmp_path / "ws", "halt") / "trial-0000"
    wait_until(lambda: (run_dir / "events.jsonl").exists() and events_of(run_dir, "eval"), 60, "the trial's first eval")
    if how == "SIGINT":
        worker.send_signal(signal.SIGINT)
    else:
        podium("hpo", "stop", "--study", "halt", "--workspace", str(tmp_path / "ws"), check=True)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    assert events_of(run_dir, "run_end")[-1]["reason"] == "stopped"
    trials = load(tmp_path, "halt").trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[0].user_attrs["reason"].startswith("not finished: the study was stopped")
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
    assert "queued again for when the study resumes" in out
    # Resuming needs only the name: base, space, target and settings come from the study; the queued point runs first.
    resumed = start_driver(tmp_path, fake, study="halt", workspace=tmp_path / "ws")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    trials = load(tmp_path, "halt").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert "study halt: minimize val_loss, tpe sampler, none pruner, 4 trials in all" in out


# ------------------------------------------------------------- real trials


@pytest.mark.slow
def test_pruning_stops_a_real_trial_process(tmp_path):
    """Five earlier trials that reached 0.0 at every evaluation: the median pruner stops the real run at its first."""
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["run"].update(max_steps=500, eval_interval=4, log_interval=2)
    data["checkpoint"]["interval"] = 0
    base.write_text(yaml.safe_dump(data))
    space = write(tmp_path / "space.yaml", "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    opts = StudyOptions(study="prune", workspace=tmp_path / "ws", base=base, space=space, trials=6)
    study = Controller(opts, out=lambda line: None).prepare()
    for lr in (0.002, 0.003, 0.004, 0.005, 0.006):
        study.add_trial(
            optuna.trial.create_trial(
                params={"optim.lr": lr},
                distributions={"optim.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)},
                value=0.0,
                intermediate_values={step: 0.0 for step in range(4, 501, 4)},
            )
        )
    result = podium(
        "hpo",
        "-c",
        str(base),
        "--space",
        str(space),
        "--trials",
        "6",
        "--study",
        "prune",
        "--workspace",
        str(tmp_path / "ws"),
        "--pruner",
        "median",
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trial = load(tmp_path, "prune").trials[5]
    assert trial.state == optuna.trial.TrialState.PRUNED
    run_dir = Path(trial.user_attrs["run_dir"])
    end = events_of(run_dir, "run_end")[-1]
    assert end["reason"] == "stopped" and end["step"] < 500, end
    assert trial.user_attrs["run_end"] == "stopped"
    assert trial.user_attrs["reason"].startswith("pruned at step 4: val_loss")
    assert list(trial.intermediate_values) == [4]
    acks = [e for e in events_of(run_dir, "control_ack") if e["cmd"] == "stop"]
    assert acks and acks[0]["outcome"] == "done"


@pytest.mark.slow
def test_smoke_study_of_six_real_trials_over_two_hyperparameters(tmp_path):
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["run"].update(max_steps=10, eval_interval=5, log_interval=5)
    data["checkpoint"]["interval"] = 0
    base.write_text(yaml.safe_dump(data))
    space = write(
        tmp_path / "space.yaml",
        "optim.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\nmodel.n_layers: {type: int, low: 1, high: 2}\n",
    )
    ws = tmp_path / "ws"
    result = podium(
        "hpo",
        "-c",
        str(base),
        "--space",
        str(space),
        "--trials",
        "6",
        "--study",
        "smoke",
        "--workspace",
        str(ws),
        "--nproc",
        "1",
        "--seed",
        "7",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    snap = show_json(ws, "smoke", "--importances")
    assert sum(snap["counts"].values()) == 6 and set(snap["counts"]) <= {"COMPLETE", "PRUNED"}, snap["counts"]
    for trial in snap["trials"]:
        run_dir = Path(trial["run_dir"])
        end = events_of(run_dir, "run_end")[-1]
        assert end["reason"] == trial["user_attrs"]["run_end"]
        assert end["reason"] in (("finished",) if trial["state"] == "COMPLETE" else ("stopped", "finished"))
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["optim"]["lr"] == trial["params"]["optim.lr"]
        assert config["model"]["n_layers"] == trial["params"]["model.n_layers"]
        if trial["state"] == "COMPLETE":
            assert trial["value"] == events_of(run_dir, "eval")[-1]["val_loss"]
            assert [s for s, _ in trial["intermediate"]] == [5, 10]
    complete = [t for t in snap["trials"] if t["state"] == "COMPLETE"]
    assert snap["best"]["value"] == min(t["value"] for t in complete)
    assert set(snap["importances"]["values"]) == {"optim.lr", "model.n_layers"}
    assert f"best trial {snap['best']['number']}: val_loss" in result.stdout
    # Two model sizes and one token budget cannot determine a scaling law: a clear refusal, not a fit.
    scaling = podium("scaling", str(study_dir(ws, "smoke")))
    assert scaling.returncode == 2
    assert "distinct model size N" in scaling.stderr or (len(complete) < 6 and "needs at least 6" in scaling.stderr)


@pytest.mark.slow
def test_a_study_with_the_tensorboard_sink_fills_the_hparams_view(tmp_path, fake):
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    base = tmp_path / "base.yaml"
    base.write_text(SMOKE.read_text() + "\nsinks:\n  tensorboard: true\n")
    code, _ = run_controller_with(tmp_path, fake, base, GRID_6, study="tb", trials=3, sampler="grid", pruner="none")
    assert code == 0
    trials = load(tmp_path, "tb").trials
    seen = {}
    for folder in sorted((study_dir(tmp_path / "ws", "tb") / "tensorboard").iterdir()):
        params, value = None, None
        for file in folder.iterdir():
            for event in LegacyEventFileLoader(str(file)).Load():
                for v in event.summary.value:
                    if v.metadata.plugin_data.plugin_name == "hparams":
                        data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                        hp = data.session_start_info.hparams
                        params = {k: hp[k].number_value for k in ("optim.lr", "model.n_layers")}
                    elif v.tag == "val_loss":
                        value = v.simple_value
        seen[folder.name] = (params, value)
    assert set(seen) == {f"trial-{t.number:04d}" for t in trials}
    for t in trials:
        params, value = seen[f"trial-{t.number:04d}"]
        assert params == pytest.approx(t.params) and value == pytest.approx(t.value)


def test_heartbeat_settings_on_a_journal_are_refused(tmp_path):
    result = podium("hpo", "--study", "x", "--workspace", str(tmp_path), "--space", "s.yaml", "--heartbeat", "5")
    assert result.returncode == 2 and "--heartbeat, --grace and --retries apply to a database" in result.stderr
