"""Gradient clipping: fixed global norm, AutoClip, moving-average ratio, and unit-wise AGC.

Every method works on device tensors only: thresholds, histories and clip
coefficients never leave the device, and no tensor is made from a host number
during a step (on CUDA that is a blocking copy), so clipping adds no host
synchronisation. Each call returns a record of 0-d device tensors for the step;
``totals`` reduces an interval's records at the log step, so the per-step
figures cost no kernels of their own.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def _global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    if all(g.dtype == torch.float32 for g in grads):
        # One fused kernel over all tensors, as clip_grad_norm_ does: a kernel per
        # tensor was a launch per parameter on every step, which shows on a GPU.
        norms = torch._foreach_norm(grads)
    else:  # half-precision gradients: their norms in float32
        norms = tuple(torch.linalg.vector_norm(g.float()) for g in grads)
    return torch.linalg.vector_norm(torch.stack(norms))


def _coefficient(norm: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """What the gradients are multiplied by: at most 1, limit / norm above the limit (as clip_grad_norm_)."""
    return torch.clamp(limit / (norm + EPS), max=1.0)


def _unit_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each output unit: rows of a matrix (all but the first dim of a conv kernel)."""
    return torch.linalg.vector_norm(t.float().reshape(t.shape[0], -1), dim=1)


class GradClipper:
    """``method``: none | fixed | autoclip | ratio | agc.

    - fixed: clip the global norm to ``max_norm``.
    - autoclip (Seetharaman et al., 2020): clip to the ``percentile`` of the
      norms seen in the last ``window`` steps; adapts to the run's own scale.
    - ratio (as in OLMo): clip to ``ratio`` x the moving average of past norms,
      catching sudden spikes relative to recent history.
    - agc (Brock et al., 2021, unit-wise): scale each unit's gradient so that
      ||G_i|| / max(||W_i||, eps_w) <= ``agc_lambda``. 1-D parameters (norms,
      biases) are left alone, as in the paper.
    The adaptive methods also respect ``max_norm`` as an upper bound when it is > 0.
    """

    def __init__(
        self,
        method: str,
        params: list[torch.Tensor],
        device: torch.device,
        *,
        max_norm: float = 1.0,
        percentile: float = 10.0,
        window: int = 1000,
        ratio: float = 2.0,
        ema_beta: float = 0.99,
        agc_lambda: float = 0.01,
        agc_eps: float = 1e-3,
        warmup_steps: int = 10,
    ):
        self.method, self.params = method, params
        self.max_norm, self.percentile, self.window = max_norm, percentile, window
        self.ratio, self.ema_beta, self.agc_lambda, self.agc_eps = ratio, ema_beta, agc_lambda, agc_eps
        self.warmup_steps = warmup_steps
        self.history = torch.full((window,), float("nan"), device=device)  # NaN: no finite norm in that slot
        self.ema = torch.zeros((), device=device)
        self.seen = 0  # host counter: how many norms have been recorded
        # How many of them were finite, on the device: fp16's first norms are often inf, and an adaptive
        # limit from no finite norm at all would be 0 (every gradient zeroed) or NaN.
        self.finite_seen = torch.zeros((), device=device)
        # Made once: torch.tensor(x, device=cuda) in the step would be a blocking copy, a full sync.
        self._cap = torch.full((), max_norm if max_norm > 0 else float("inf"), device=device)
        self._unlimited = torch.full((), float("inf"), device=device)

    def __call__(self) -> tuple[torch.Tensor, ...]:
        """Clip the gradients in place; returns this step's record for :meth:`totals`.

        Global-norm methods: (norm, limit); agc: (norm before, norm after, fraction of units clipped).
        """
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.method == "agc":
            return self._agc(grads)
        norm = _global_norm(grads)
        limit = self._limit(norm)
        torch._foreach_mul_(grads, _coefficient(norm, limit))
        self._record(norm)
        return norm, limit

    def totals(self, records: list[tuple[torch.Tensor, ...]], skipped: torch.Tensor | None = None) -> torch.Tensor:
        """Sums over the applied steps of (norm before, norm after, clipped fraction): a float32 device tensor of 3.

        ``skipped`` (bool, one per record) marks the steps the fp16 loss scaler skipped: their gradients
        overflowed and changed no weight, so their (infinite) norms say nothing about the run.
        """
        if not records:
            return torch.zeros(3, device=self.history.device)
        columns = [torch.stack(column) for column in zip(*records, strict=True)]
        if self.method == "agc":
            values = torch.stack(columns).float()
        else:
            norms, limits = columns
            # Clipped means above the limit: a norm at the limit gets a coefficient a hair under 1 (EPS), not a clip.
            values = torch.stack([norms, norms * _coefficient(norms, limits), norms > limits]).float()
        if skipped is not None:
            values = torch.where(skipped, 0.0, values)
        return values.sum(dim=1)

    def _limit(self, norm: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return self._unlimited
        if self.method == "fixed" or self.seen < max(self.warmup_steps, 1):
            return self._cap
        if self.method == "autoclip":
            recent = self.history[: min(self.seen, self.window)]
            adaptive = torch.nanquantile(recent, self.percentile / 100.0)
        elif self.method == "ratio":
            adaptive = self.ratio * self.ema
        else:
            raise ValueError(f"unknown clipping method {self.method!r}")
        return torch.where(self.finite_seen > 0, torch.minimum(adaptive, self._cap), self._cap)

    def _record(self, norm: torch.Tensor) -> None:
        # A non-finite norm would poison the history: it is left out (NaN, which nanquantile skips; the EMA holds).
        if self.method in ("autoclip", "ratio"):
            finite = torch.isfinite(norm)
            if self.method == "autoclip":
                self.history[self.seen % self.window] = torch.where(finite, norm, float("nan"))
            else:  # the first finite norm starts the average
                blended = self.ema_beta * self.ema + (1 - self.ema_beta) * norm
                self.ema = torch.where(finite, torch.where(self.finite_seen > 0, blended, norm), self.ema)
            self.finite_seen = self.finite_seen + finite
        self.seen += 1

    def _agc(self, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        before = _global_norm(grads)
        clipped = torch.zeros((), device=before.device)
        units = 0
        for p in self.params:
            if p.grad is None or p.ndim < 2:
                continue
            w = _unit_norms(p.detach()).clamp(min=self.agc_eps)
            g = _unit_norms(p.grad)
            limit = self.agc_lambda * w
            scale = torch.where(g > limit, limit / g.clamp(min=EPS), torch.ones_like(g))
            p.grad.mul_(scale.to(p.grad.dtype).view(-1, *([1] * (p.ndim - 1))))
            clipped += (scale < 1.0).sum()
            units += scale.numel()
        after = _global_norm(grads)
        return before, after, clipped / max(units, 1)

    def state_dict(self) -> dict:
        return {"history": self.history, "ema": self.ema, "seen": self.seen, "finite_seen": self.finite_seen}

    def load_state_dict(self, state: dict) -> None:
        self.history.copy_(state["history"])
        self.ema = state["ema"].to(self.history.device)
        self.seen = int(state["seen"])
        # Checkpoints from before the count: their history held only finite norms.
        self.finite_seen = state.get("finite_seen", torch.tensor(float(self.seen))).to(self.history.device)
