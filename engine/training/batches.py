"""The training data of one rank: its windows, their order, the curricula, and batches on the device."""

from __future__ import annotations

import numpy as np
import torch

from engine.contract.config import Config
from engine.music import data
from engine.training import distributed
from engine.training.curriculum import DifficultyCurriculum, SeqLenCurriculum, piece_difficulty


class Batches:
    """Draws this rank's share of each global batch, cropped and filtered by the curricula.

    ``state_dict`` is the difficulty stage, the state every rank shares; each rank's position in
    the data order is ``rank_state``, gathered from every rank at a save.
    """

    def __init__(self, cfg: Config, dist: distributed.Dist):
        self.cfg, self.dist = cfg, dist
        self.per_rank = cfg.batch.global_batch_size // dist.world_size
        corpus = data.prepare(cfg)
        self.corpus = corpus
        train_ids, val_ids = data.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
        pitch_range = (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high)
        self.train_set = data.WindowSet(corpus, train_ids, cfg.data.seq_len, cfg.data.transpose, pitch_range)
        self.tokenizer = corpus.tokenizer()
        self.train_set.set_tokenizer(self.tokenizer)
        self.tokenizer_json = (corpus.directory / "tokenizer.json").read_bytes()
        self.val_set = data.WindowSet(corpus, val_ids, cfg.data.seq_len, 0, pitch_range)
        self.val_pieces = [corpus.piece(i) for i in val_ids]
        self.pad_id = corpus.meta["pad_id"]
        self.unigram_entropy = data.unigram_entropy(corpus, train_ids)

        cur = cfg.curriculum
        self.seq_curriculum = SeqLenCurriculum(cur.seq_len_stages, cur.unit) if cur.seq_len_stages else None
        self.difficulty = None
        if cur.difficulty_stages:
            tokenizer = self.tokenizer
            program_of = np.full(len(tokenizer), -1)
            for token, idx in tokenizer.vocab.items():
                if token.startswith("Program_"):
                    program_of[idx] = int(token.split("_")[1])
            pieces = [corpus.piece(i) for i in train_ids]
            scores = piece_difficulty(pieces, data.pitch_of_token(tokenizer), tokenizer["Bar_None"], program_of)
            self.difficulty = DifficultyCurriculum(cur.difficulty_stages, scores)
        self.stage = self.difficulty.stage(0) if self.difficulty else 0
        self.window_subset: np.ndarray | None = None
        self.sampler = self._sampler(self.stage)

    @property
    def longest(self) -> int:
        return self.seq_curriculum.longest if self.seq_curriculum else self.cfg.data.seq_len

    def seq_len(self, step: int, tokens_seen: int) -> int:
        return self.seq_curriculum.length(step, tokens_seen) if self.seq_curriculum else self.cfg.data.seq_len

    def draw(self, step: int, tokens_seen: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """This rank's share of the step's global batch, cropped to the curriculum's length."""
        length = self.seq_len(step, tokens_seen)
        examples = []
        for _ in range(self.per_rank):
            index, rng = self.sampler.next()
            if self.window_subset is not None:
                index = int(self.window_subset[index])
            x, y = self.train_set.example(index, rng)
            examples.append((x[:length], y[:length]))
        return examples

    def skip(self) -> None:
        """Pass over the next step's windows."""
        for _ in range(self.per_rank):
            self.sampler.next()

    def to_device(self, examples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) on the device in one copy. On CUDA from pinned memory, without blocking: a copy
        from pageable memory may first wait for the device's queue to drain."""
        device = self.dist.device
        cuda = device.type == "cuda"
        # Written in place: a tensor made from the arrays would be one more copy, and on CUDA a pinned one another.
        pair = torch.empty((2, len(examples), len(examples[0][0])), dtype=torch.long, pin_memory=cuda)
        for host, column in zip(pair.numpy(), zip(*examples, strict=True), strict=True):  # inputs, then targets
            np.stack(column, out=host)
        if cuda:
            pair = pair.to(device, non_blocking=True)
        return pair[0], pair[1]

    def advance(self, step: int) -> str | None:
        """Move to the difficulty stage of ``step``; returns what changed, if anything did."""
        if self.difficulty is None:
            return None
        stage = self.difficulty.stage(step)
        if stage == self.stage:
            return None
        self.stage = stage
        self.sampler = self._sampler(stage)
        assert self.window_subset is not None  # _sampler sets it whenever there is a curriculum
        return (
            f"curriculum stage {stage}: {len(self.window_subset)} windows "
            f"from the easiest {self.cfg.curriculum.difficulty_stages[stage][1]:.0%} of pieces"
        )

    def state_dict(self) -> int:
        return self.stage

    def load_state_dict(self, stage: int) -> None:
        self.stage = int(stage)

    def rank_state(self) -> dict[str, int]:
        return self.sampler.state()

    def load_rank_state(self, sampler: dict[str, int]) -> None:
        self.sampler = self._sampler(self.stage, **sampler)

    def continue_from(self, ranks: list[dict[str, dict[str, int]]], saved_world: int) -> str:
        """Go on from where ``saved_world`` ranks left off; returns what that means, to report.

        Ranks draw in lockstep, so together they consumed the first ``position * saved_world``
        windows of the epoch's permutation; the new ranks go on from there.
        """
        epoch, position = ranks[0]["sampler"]["epoch"], ranks[0]["sampler"]["position"]
        self.sampler = self._sampler(self.stage, epoch, position * saved_world // self.dist.world_size)
        return f"the data order goes on from window {position * saved_world} of epoch {epoch}"

    def _sampler(self, stage: int, epoch: int = 0, position: int = 0) -> data.RankSampler:
        """A sampler over the windows the curriculum allows in ``stage`` (all windows without one)."""
        if self.difficulty is None:
            self.window_subset = None
            n = len(self.train_set)
        else:
            allowed = set(self.difficulty.pieces(stage).tolist())
            self.window_subset = np.array(
                [i for i, (piece, _) in enumerate(self.train_set.windows) if piece in allowed]
            )
            n = len(self.window_subset)
        # Each stage draws its own order, so a stage change never replays the previous stage's sequence.
        return data.RankSampler(
            n, self.dist.rank, self.dist.world_size, self.cfg.run.seed + 7919 * stage, epoch, position
        )
