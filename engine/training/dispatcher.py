"""Commands and recovery actions, agreed by every rank and applied at the same step; the run's pause and stop."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.contract.commands import ControlInbox
from engine.contract.events import ControlAck
from engine.monitoring.monitors import Profiler
from engine.training.event_scan import events_of_type

if TYPE_CHECKING:
    from engine.training.trainer import Trainer

PAUSE_POLL_SECONDS = 0.2

_stop_signalled = False


class GroupRestart(BaseException):
    """torchrun ends this attempt of the worker group: the run goes on in the next one, or its launcher ends it.

    A BaseException, as KeyboardInterrupt is: raised from the signal handler wherever the worker happens to
    be, it must pass the ``except Exception`` that keep a run going past a failed save or mirror.
    """


def handle_signals(torchrun_may_restart: bool, sigterm_stops: bool = False) -> None:
    """SIGINT asks for a graceful stop, agreed with the other ranks at the next step: the launcher and the
    app stop a run that way (torchrun forwards it to the workers). SIGTERM is the same stop (a batch
    system's or a person's) unless torchrun may restart the group: torchrun then SIGTERMs the workers to
    tear the group down, and a stop would end the whole run with a ``run_end`` the next attempt contradicts.

    ``sigterm_stops``: the launcher is a batch system's job step (``--sigterm stop``), whose preemption or
    time limit SIGTERMs every process of the step, workers included; SIGTERM then stays a stop with a
    checkpoint, or the requeued job would resume from an older one.
    """
    signal.signal(signal.SIGINT, _stop_on_signal)
    ends_attempt = torchrun_may_restart and not sigterm_stops
    signal.signal(signal.SIGTERM, _end_attempt if ends_attempt else _stop_on_signal)


def stop_signalled() -> bool:
    """Whether a signal asked this rank to stop (the ranks agree on it at the next step)."""
    return _stop_signalled


def _stop_on_signal(_signum, _frame) -> None:
    global _stop_signalled
    _stop_signalled = True


def ignore_sigterm() -> None:
    """The attempt is ending anyway (an exception is being reported): torchrun's SIGTERM to tear the group
    down must not interrupt rank 0 writing why, or the next attempt reads no step past the last metrics."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _end_attempt(_signum, _frame) -> None:
    # Once: a second SIGTERM (torchrun repeats it) must not interrupt rank 0 saying why the attempt ended.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise GroupRestart("torchrun stopped the workers (SIGTERM) to restart or shut down the group")


class Dispatcher:
    """Rank 0 reads the command inbox and the actions the detectors queue; every rank applies them.

    One small CPU collective per poll agrees on news, a stop signal and out-of-memory. ``stop`` is
    the one way the run is stopped, whoever asks.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.dist = trainer.dist
        run = trainer.run
        answered = (
            {e.id for e in events_of_type(run.events, "control_ack") if isinstance(e, ControlAck) and e.id is not None}
            if self.dist.is_main
            else set()
        )
        self.inbox = (
            ControlInbox(run.control, answered, run.launched_at() or time.time()) if self.dist.is_main else None
        )
        self.pending_actions: list[dict[str, Any]] = []
        self.lock = threading.Lock()  # the stall watchdog queues actions from its own thread
        self.deferred: tuple[list, list] = ([], [])
        self.paused = False
        self.stop_reason: str | None = None
        self.stop_message = ""
        self.rolled_back = False  # set by a rollback, cleared by the loop iteration it happened in

    def stop(self, reason: str, message: str, announce: str | None = None) -> None:
        """End the run after the current step: ``reason`` is its end reason, ``announce`` the status shown."""
        self.stop_reason, self.stop_message = reason, message
        self.trainer.emit("status", state="stopping", message=announce or message)

    def stop_early(self, observe: Callable[[Any], str | None], value: Any) -> None:
        """Hand early stopping a log step's loss or an evaluation's result (``observe(value)``) unless the
        run already stops; stop when it names a reason."""
        if not self.stop_reason:
            reason = observe(value)
            if reason:
                self.stop("early_stopped", reason, f"early stopping: {reason}")

    def queue(self, action: dict[str, Any]) -> None:
        """A recovery action, taken at the next agreement so that every rank applies it at the same step."""
        with self.lock:
            self.pending_actions.append(action)

    def poll(self, oom: bool = False, defer: bool = False) -> bool:
        """Agree with all ranks on commands, actions, a stop signal and out-of-memory; returns whether any
        rank ran out of memory. Commands are applied now on every rank, or with ``defer`` once the step
        is complete (:meth:`apply_deferred`)."""
        records = self.inbox.poll() if self.inbox is not None else []
        with self.lock:
            actions, self.pending_actions = self.pending_actions, []
        has_news, stop, any_oom = self.dist.agree(bool(records or actions), stop_signalled(), oom)
        if stop and not self.stop_reason:
            self.stop("stopped", "stop requested by signal")
        if has_news:
            self.deferred = self.dist.broadcast_objects((records, actions))
            if not defer:
                self.apply_deferred()
        return any_oom

    @property
    def has_deferred(self) -> bool:
        return any(self.deferred)

    def apply_deferred(self) -> None:
        records, actions = self.deferred
        self.deferred = ([], [])
        for record in records:
            self._command(record)
        for action in actions:
            self._recover(action)

    def wait_while_paused(self) -> None:
        while self.paused and not self.stop_reason:
            time.sleep(PAUSE_POLL_SECONDS)
            self.poll()

    def _ack(self, record: dict, outcome: str, reason: str = "", **extra: Any) -> None:
        self.trainer.emit(
            "control_ack", id=record.get("id"), cmd=record.get("cmd"), outcome=outcome, reason=reason, **extra
        )

    def _command(self, record: dict) -> None:
        trainer = self.trainer
        if "malformed" in record:
            self._ack(record, "refused", record["malformed"])
            return
        cmd, args = record["cmd"], record["args"]  # checked against its model by the inbox on rank 0
        if cmd == "pause":
            if self.paused:
                return self._ack(record, "refused", "already paused")
            self.paused = True
            self._ack(record, "done")
            trainer.emit("status", state="paused", message="paused by command")
        elif cmd == "resume":
            if not self.paused:
                return self._ack(record, "refused", "not paused")
            self.paused = False
            self._ack(record, "done")
            trainer.emit("status", state="running", message="resumed by command")
        elif cmd == "stop":
            if self.stop_reason:
                return self._ack(record, "refused", "already stopping")
            self._ack(record, "done")
            self.stop("stopped", "stop requested by command")
        elif cmd == "save_checkpoint":
            path = trainer.checkpoints.save("command")
            self._ack(record, "done", path=str(path) if path else None)
        elif cmd == "profile":
            monitors = trainer.monitors
            if monitors.profiler is not None:
                return self._ack(record, "refused", "a profile is already being recorded")
            if self.dist.is_main:
                monitors.profiler = Profiler(trainer.run.root, trainer.device, args["steps"], trainer.step)
            self._ack(record, "done", steps=args["steps"])
        elif cmd == "set_lr":
            schedule = trainer.schedule
            old = schedule.peak_lr
            schedule.peak_lr = args["lr"]
            if trainer.monitors.anomalies is not None:
                trainer.monitors.anomalies.expect_lr_change()
            self._ack(
                record,
                "done",
                old_peak_lr=old,
                new_peak_lr=args["lr"],
                lr_now=schedule.lr(trainer.step, trainer.tokens_seen),
            )

    def _recover(self, action: dict[str, Any]) -> None:
        """Apply a recovery action on every rank and report it, linked to its anomaly by id."""
        trainer = self.trainer
        cfg = trainer.cfg.anomaly
        taken: dict[str, Any] = {"action": action["action"], "outcome": "done"}
        lower_lr = action["action"] == "lower_lr"
        if action["action"] == "rollback":
            to_step = trainer.checkpoints.rollback()
            lower_lr = cfg.rollback_lowers_lr
            if to_step is not None:
                taken["to_step"] = to_step
                self.rolled_back = True
            elif trainer.weights_finite():
                taken["outcome"] = "no valid checkpoint to roll back to; lowered the LR instead"
                lower_lr = True
            else:
                lower_lr = False
                # Going on would train NaN weights, and sampling from them fails: nothing to recover.
                taken["outcome"] = "no valid checkpoint to roll back to and the weights are not finite: stopped"
                self.stop(
                    "failed",
                    f"the weights are not finite at step {trainer.step} and no checkpoint was saved yet "
                    f"to roll back to (checkpoint.interval={trainer.cfg.checkpoint.interval}); "
                    "lower optim.lr, or save checkpoints more often",
                )
        elif action["action"] == "skip_batch":
            # The detectors see a batch only after it was applied: skip the window that follows instead.
            trainer.batches.skip()
        elif action["action"] == "pause":
            self.paused = True
            trainer.emit("status", state="paused", message=f"paused by the anomaly policy ({action['kind']})")
        elif action["action"] == "stop":
            self.stop("stopped", f"stopped by the anomaly policy ({action['kind']})")
        if lower_lr:
            trainer.schedule.peak_lr *= cfg.lr_factor
            taken["lr_factor"] = cfg.lr_factor
        trainer.emit(
            "anomaly",
            id=action["id"],
            kind=action["kind"],
            action=action["action"],
            action_taken=taken,
            severity="info",
            message=f"{action['action']} after {action['kind']}: {taken['outcome']}",
        )
        anomalies = trainer.monitors.anomalies
        if anomalies is not None and "to_step" not in taken:  # a rollback restarted the detectors (its hook)
            anomalies.expect_lr_change()
