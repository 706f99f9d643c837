"""A training step never makes the host wait for the device.

On a GPU a step is fast only while the host queues kernels ahead of the device; one
``.item()`` or one ``torch.tensor(x, device=cuda)`` in the step drains the queue and leaves
the GPU idle while the host prepares the next batch. The operators that would do so are
visible on the CPU too (engine/training/op_audit.py), so these tests run anywhere. The log step reads
its figures back by design and is not checked.
"""

from __future__ import annotations

import pytest
import torch

from engine.training.op_audit import OpAudit, host_step_counts
from tests.helpers import trainer_in_this_process


def test_the_audit_sees_what_would_synchronise():
    x = torch.ones(3)
    with OpAudit() as audit:
        x.sum().item()
        torch.tensor([2.0]) * x
        x[x > 0]
        torch.nonzero(x)
        x.to("meta")  # another device: a copy from pageable host memory blocks
    assert set(audit.synchronising()) == {
        "aten._local_scalar_dense.default",
        "aten.lift_fresh.default",
        "aten.index.Tensor (boolean mask)",
        "aten.nonzero.default",
        "aten._to_copy.default",
    }
    with OpAudit() as quiet:
        (x * 2).sum()
    assert quiet.synchronising() == {} and quiet.total == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        [],  # fixed clipping, two micro-batches a step (gradient accumulation)
        ["clip.method=none"],
        ["clip.method=autoclip", "clip.warmup_steps=0", "clip.window=10"],
        ["clip.method=ratio", "clip.warmup_steps=0"],
        ["clip.method=agc"],
        ["ema.enabled=true"],
        ["curriculum.seq_len_stages=[[0, 32], [3, 64]]"],
    ],
    ids=["fixed", "none", "autoclip", "ratio", "agc", "ema", "seq-len-curriculum"],
)
def test_a_training_step_runs_nothing_that_would_wait_on_the_device(tmp_path, podium_cache, overrides):
    with trainer_in_this_process(
        tmp_path / "run",
        ["run.max_steps=6", "run.log_interval=10", "checkpoint.interval=0", "run.eval_interval=1000", *overrides],
    ) as trainer:
        interval = trainer.begin()
        for _ in range(2):  # the optimizer makes its state in its first step
            interval = trainer.iteration(interval)
        audits = []
        for _ in range(3):  # steps 3 to 5: the curriculum's longer windows start at step 3
            with OpAudit(host_tensors=host_step_counts(trainer.optimizer)) as audit:
                interval = trainer.iteration(interval)
            audits.append(audit)
        assert interval.steps == trainer.step == 5  # none was a log step (the last step, 6, is)
        for step, audit in enumerate(audits, start=3):
            assert audit.synchronising() == {}, f"step {step}"
            assert audit.total > 100  # the forward and backward ran under the audit
        trainer.iteration(interval)
        assert trainer.end() == "finished"
