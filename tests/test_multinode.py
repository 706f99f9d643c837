"""Multi-node launches on one machine: torchrun's flags pass through, and nodes that do not share a run directory stop.

Two launchers with node ranks 0 and 1 on 127.0.0.1 stand for two hosts; giving
them different ``--run-dir`` folders is what a cluster without a shared
filesystem does.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.contract.rundir import RunDir
from engine.launcher import cli
from engine.launcher.launch import LaunchOptions, torchrun_command
from tests.conftest import SMOKE
from tests.helpers import events_of, start_run, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # imports torch
def test_torchruns_own_flags_reach_torchrun_as_given(tmp_path):
    from torch.distributed.run import get_args_parser

    parser = cli._parser()
    args = parser.parse_args(
        ["run", "-r", str(tmp_path), "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "10.0.0.1:29400"]
        + ["--rdzv-id", "job7", "--rdzv-conf", "join_timeout=900,read_timeout=120", "--monitor-interval", "0.5"]
        + ["--local-addr", "10.0.0.2", "--shutdown-timeout", "45", "--max-restarts", "3"]
    )
    opts = LaunchOptions(
        run_dir=tmp_path,
        nnodes=args.nnodes,
        rdzv_backend=args.rdzv_backend,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        max_restarts=args.max_restarts,
        torchrun_args=cli.torchrun_flags.passthrough(args),
    )
    cmd = torchrun_command(opts, RunDir(tmp_path))
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    seen = get_args_parser().parse_args(cmd[3:])  # torchrun's own parser takes every flag
    assert (seen.rdzv_conf, seen.monitor_interval, seen.local_addr) == (
        "join_timeout=900,read_timeout=120",
        0.5,
        "10.0.0.2",
    )
    assert (seen.rdzv_id, seen.max_restarts, seen.shutdown_timeout, seen.nnodes) == ("job7", 3, 45, "2")
    assert seen.training_script == "engine.training.train" and seen.module


@pytest.mark.parametrize(("flag", "instead"), [("--nproc-per-node=2", "use --nproc N"), ("--standalone", "by itself")])
def test_a_torchrun_flag_podium_sets_itself_is_refused_saying_what_to_use(tmp_path, capsys, flag, instead):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "-r", str(tmp_path), flag])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{flag.split('=')[0]} is torchrun's and podium sets it" in err
    assert instead in err and "--rdzv-conf" in err


def test_signals_to_handle_without_sigint_is_refused_since_podium_stops_runs_with_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "-r", str(tmp_path), "--signals-to-handle", "SIGTERM,SIGUSR1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--signals-to-handle" in err and "leaves out SIGINT" in err
    args = cli._parser().parse_args(["run", "-r", str(tmp_path), "--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1"])
    assert cli.torchrun_flags.passthrough(args) == ["--signals-to-handle=SIGTERM,SIGINT,SIGUSR1"]


@pytest.mark.slow
def test_nodes_that_see_different_run_directories_both_stop_saying_so(tmp_path):
    common = ["-c", str(SMOKE), "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    common += ["--shared-dir-timeout", "5"]
    node0_dir, node1_dir = tmp_path / "host-a" / "run", tmp_path / "host-b" / "run"
    node1 = start_run(node1_dir, *common, "--node-rank", "1")
    node0 = start_run(node0_dir, *common, "--node-rank", "0")
    try:
        codes = node0.wait(timeout=120), node1.wait(timeout=120)
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
    err0, err1 = node0.stderr.read(), node1.stderr.read()
    assert codes == (2, 2), (err0, err1)
    assert f"node(s) 1 gave no sign through {node0_dir}" in err0 and "filesystem they all share" in err0
    assert f"node 1: no word from node 0 through {node1_dir}" in err1 and "filesystem they all share" in err1
    end = events_of(node0_dir, "run_end")[-1]
    assert end["reason"] == "failed" and "gave no sign" in end["message"]
    assert not (Path(node0_dir) / "engine.log").exists()  # torchrun never started


@pytest.mark.slow
def test_a_node_that_dies_mid_run_comes_back_and_the_run_resumes_from_its_checkpoint(tmp_path):
    """One node's agent and its workers are killed; with run.max_restarts > 0 the other node's torchrun restarts
    the group, which waits for the node to rejoin (its launcher started again, as a scheduler would) and then
    continues from the newest checkpoint to the end. Node 0 hosts the rendezvous, as the first node of a
    cluster does: a rendezvous host that dies takes torchrun's store with it."""
    import psutil

    run_dir = tmp_path / "shared" / "run"
    common = ["-c", str(SMOKE), "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-id", "node-loss"]
    common += ["--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--set", "run.max_restarts=1"]
    common += ["--set", "run.max_steps=80", "--set", "checkpoint.interval=10", "--set", "run.eval_interval=1000"]
    node0 = start_run(run_dir, *common, "--node-rank", "0", "--rdzv-conf", "is_host=1")
    node1 = start_run(run_dir, *common, "--node-rank", "1", "--rdzv-conf", "is_host=0")
    again = None
    try:
        wait_until(lambda: any(c["step"] >= 20 for c in events_of(run_dir, "checkpoint")), 300, "a checkpoint")
        agent = next(
            p for p in psutil.Process(node1.pid).children() if "torch.distributed.run" in " ".join(p.cmdline())
        )
        for proc in [agent, *agent.children(recursive=True)]:  # workers run in sessions of their own
            proc.kill()  # the node is gone
        node1.wait(timeout=60)
        again = start_run(run_dir, *common, "--node-rank", "1", "--rdzv-conf", "is_host=0")
        assert node0.wait(timeout=400) == 0, node0.stderr.read()
        assert again.wait(timeout=60) == 0, again.stderr.read()
    finally:
        for proc in (node0, node1, again):
            if proc is not None and proc.poll() is None:
                proc.kill()
    events = events_of(run_dir)
    restart = events_of(run_dir, "restart")
    assert len(restart) == 1 and restart[0]["attempt"] == 1
    saved = [c["step"] for c in events_of(run_dir, "checkpoint")]
    assert restart[0]["resumed_from"] in saved and restart[0]["resumed_from"] >= 20
    after = events[events.index(restart[0]) :]
    steps = [e["step"] for e in after if e["type"] == "metrics"]
    assert steps and steps[0] > restart[0]["resumed_from"] and steps == sorted(steps)  # onwards, not from 0
    assert [e["reason"] for e in events_of(run_dir, "run_end")] == ["finished"]
    assert events_of(run_dir, "run_end")[0]["step"] == 80
