"""Decoder-only music transformer with causal SDPA and KV-cached generation.

Pre-norm GPT blocks in the spirit of nanoGPT: explicit, small, no framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from engine.contract.config import ModelSection


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, c // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k = torch.cat((cache[0], k), dim=2)
                v = torch.cat((cache[1], v), dim=2)
            cache[:] = [k, v]
        # Generation prefills an empty cache (t > 1, causal) and then feeds one
        # token at a time, which may attend to every cached key.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model),
            nn.GELU(),
            nn.Linear(ff_mult * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class MusicTransformer(nn.Module):
    def __init__(self, cfg: ModelSection, vocab_size: int, max_seq_len: int):
        super().__init__()
        self.cfg, self.vocab_size, self.max_seq_len = cfg, vocab_size, max_seq_len
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(max_seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied: fewer parameters, better small-data training
        self.activation_checkpointing = False
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                # GPT-2's scaled init of residual projections keeps the residual stream's variance flat.
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, caches: list[list] | None = None, start_pos: int = 0) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(start_pos, start_pos + t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for i, block in enumerate(self.blocks):
            if self.activation_checkpointing and self.training and caches is None:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, caches[i] if caches is not None else None)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        stop_token: int | None = None,
        allowed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sample continuations of ``prompt`` (batch, t) with a KV cache.

        ``generator`` may be a list, one per row, so a row of a batch draws what it would draw alone.

        ``allowed``, given the tokens so far, returns a (batch, vocab) bool mask
        of the tokens that may come next (a grammar); the others are never drawn,
        and ``top_k`` and ``top_p`` choose among the allowed ones.

        When the context fills ``max_seq_len``, the cache is rebuilt from the
        newest half of the tokens, so samples can be longer than the training
        window at the cost of one re-prefill per half window.
        """
        was_training = self.training
        self.eval()
        out = prompt
        caches: list[list] = []
        cached_len = 0
        finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
        for _ in range(max_new_tokens):
            if not caches or cached_len >= self.max_seq_len:
                context = out[:, -(self.max_seq_len // 2 if caches else self.max_seq_len) :]
                caches = [[] for _ in self.blocks]
                logits = self(context, caches, 0)
                cached_len = context.shape[1]
            else:
                logits = self(out[:, -1:], caches, cached_len)
                cached_len += 1
            logits = logits[:, -1, :].float() / temperature
            if allowed is not None:
                logits = logits.masked_fill(~allowed(out), float("-inf"))
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if top_p < 1.0:
                logits = _nucleus(logits, top_p)
            probs = F.softmax(logits, dim=-1)
            if isinstance(generator, list):
                nxt = torch.cat([torch.multinomial(p[None], 1, generator=g) for p, g in zip(probs, generator)])
            else:
                nxt = torch.multinomial(probs, 1, generator=generator)
            if stop_token is not None:
                nxt = torch.where(finished[:, None], torch.full_like(nxt, stop_token), nxt)
                finished |= nxt[:, 0] == stop_token
            out = torch.cat((out, nxt), dim=1)
            if stop_token is not None and bool(finished.all()):
                break
        self.train(was_training)
        return out


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` with every token masked but the fewest likeliest whose probabilities add up to ``top_p``."""
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(ordered, dim=-1)
    # A token goes when the likelier ones already hold top_p; the likeliest always stays.
    beyond = probs.cumsum(dim=-1) - probs >= top_p
    return logits.masked_fill(torch.zeros_like(beyond).scatter(-1, order, beyond), float("-inf"))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; norms, biases and embeddings train without decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 and "emb" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
