"""What the engine watches besides the loss: system metrics, generated music, metric sinks, profiles.

- :class:`SystemSampler` samples CPU, memory and GPU figures on a thread of
  its own at ``monitor.system_interval_s``; the training loop only picks up
  the latest sample at log steps (no work, no host sync in the step).
- :class:`MusicEvaluator` generates samples with fixed seeds at evaluations
  (rank 0), saves them as MIDI with their metrics, and scores them against the
  same metrics on the validation pieces (computed once, cached in the run).
- :class:`Sinks` mirrors scalars to TensorBoard / W&B (offline) when enabled.
- :class:`Profiler` records N steps with ``torch.profiler`` on command.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from engine.music import metrics as mm
from engine.music import quality
from engine.music.data import Corpus, split_pieces
from engine.music.export import corpus_tempo, finish_score
from engine.music.grammar import RemiGrammar, has_empty_bars
from engine.music.memorization import TrainingIndex
from engine.training.model import MusicTransformer


class SystemSampler:
    """Per-rank process and host figures, plus GPU figures from torch and NVML.

    psutil's ``cpu_percent`` is relative to the previous call on the same
    object, so the objects live as long as the sampler. Every CUDA rank reads
    its own GPU's used memory from NVML (``gpu_mem_used_mb``: every process on
    that GPU counts, not only this one); the first rank of each host also
    reports every GPU of the host (``gpus``). A missing NVML library is normal
    on CPU machines and leaves the NVML fields out; so does a figure a GPU does
    not support (a MIG slice has no utilisation, some boards no temperature or
    power): it is left out and the rest still reported.

    ``gpu_mem_peak_mb`` is the peak allocated since the training loop last took
    a sample (:meth:`latest`, at log steps): the sampler resets torch's peak
    counters (``torch.cuda.reset_peak_memory_stats``) after reading them and
    keeps the highest reading until a sample is taken, so one early spike does
    not stand for the whole run and no spike between log steps is lost.
    Nothing else in the process may rely on those counters.

    :meth:`sample` never raises: a part that fails (psutil, torch's counters,
    NVML) keeps its last good fields, and each kind of failure is reported once
    on stderr, so the thread goes on sampling whatever still works.
    """

    def __init__(self, rank: int, local_rank: int, device: torch.device, interval_s: float):
        self.rank, self.device, self.interval_s = rank, device, interval_s
        self.process = psutil.Process()
        self.process.cpu_percent()
        psutil.cpu_percent()
        self.host = socket.gethostname()
        self.nvml = self._init_nvml() if device.type == "cuda" else None
        self.host_gpus = local_rank == 0
        self.handle = self._own_handle() if self.nvml is not None else None
        self._latest: dict[str, Any] | None = None
        self._peak_lock = threading.Lock()  # the peak is kept by the sampler thread, reset by the training thread
        self._peak_since_taken_mb = 0.0
        self._last_good: dict[str, dict[str, Any]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podium-system-sampler", daemon=True)

    @staticmethod
    def _init_nvml():
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml
        except Exception:  # NVMLError_LibraryNotFound and friends: no NVML on this host is not an error
            return None

    def _own_handle(self):
        try:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            return nvml_handle(self.nvml, torch.cuda.get_device_properties(index), index)
        except Exception as exc:  # without its handle this rank only loses gpu_mem_used_mb
            self._report("nvml_handle", exc)
            return None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> dict[str, Any] | None:
        """The newest sample; the peak memory of the next one starts from here."""
        with self._peak_lock:
            self._peak_since_taken_mb = 0.0
        return self._latest

    def _run(self) -> None:
        # The first sample waits a second (or the interval, when shorter): CPU
        # percentages are measured over the time since the last call.
        while not self._stop.wait(self.interval_s if self._latest else min(self.interval_s, 1.0)):
            self._latest = self.sample()

    def sample(self) -> dict[str, Any]:
        record: dict[str, Any] = {"rank": self.rank, "host": self.host, "time": time.time()}
        for part in (self._host_figures, self._torch_figures, self._nvml_figures):
            try:
                fields = part()
            except Exception as exc:
                self._report(part.__name__, exc)
                fields = self._last_good.get(part.__name__, {})
            else:
                self._last_good[part.__name__] = fields
            record.update(fields)
        return record

    def _report(self, part: str, exc: Exception) -> None:
        # Once per part and kind of error: the thread samples every few seconds for the whole run.
        if (part, type(exc).__name__) not in self._reported:
            self._reported.add((part, type(exc).__name__))
            print(
                f"system sampler (rank {self.rank}): {part} failed ({type(exc).__name__}: {exc}); keeping its "
                "last values, this error is not reported again",
                file=sys.stderr,
                flush=True,
            )

    def _host_figures(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        return {
            "cpu_percent": self.process.cpu_percent(),
            "rss_mb": self.process.memory_info().rss / 2**20,
            "host_cpu_percent": psutil.cpu_percent(),
            "host_mem_percent": memory.percent,
            "host_mem_used_mb": (memory.total - memory.available) / 2**20,
            "host_mem_total_mb": memory.total / 2**20,
        }

    def _torch_figures(self) -> dict[str, Any]:
        if self.device.type != "cuda":
            return {}
        # The caching allocator's own counters: host-side bookkeeping, no device sync. The reset takes the
        # allocator's lock, so it is safe against the training thread's allocations.
        with self._peak_lock:
            self._peak_since_taken_mb = max(
                self._peak_since_taken_mb, torch.cuda.max_memory_allocated(self.device) / 2**20
            )
            torch.cuda.reset_peak_memory_stats(self.device)
            peak = self._peak_since_taken_mb
        return {
            "gpu_mem_alloc_mb": torch.cuda.memory_allocated(self.device) / 2**20,
            "gpu_mem_reserved_mb": torch.cuda.memory_reserved(self.device) / 2**20,
            "gpu_mem_peak_mb": peak,
            "gpu_mem_total_mb": torch.cuda.get_device_properties(self.device).total_memory / 2**20,
        }

    def _nvml_figures(self) -> dict[str, Any]:
        if self.nvml is None:
            return {}
        fields: dict[str, Any] = {}
        mem = self._figure(self.nvml.nvmlDeviceGetMemoryInfo, self.handle) if self.handle is not None else None
        if mem is not None:
            fields["gpu_mem_used_mb"] = mem.used / 2**20
        if self.host_gpus:
            fields["gpus"] = self._nvml_gpus(self.nvml)
        return fields

    def _figure(self, query, *args):
        """One NVML query, None where NVML refuses it (not supported, no permission, GPU lost)."""
        try:
            return query(*args)
        except self.nvml.NVMLError:
            return None

    def _nvml_gpus(self, nv: Any) -> list[dict[str, Any]]:
        figure = self._figure
        gpus = []
        for index in range(figure(nv.nvmlDeviceGetCount) or 0):
            handle = figure(nv.nvmlDeviceGetHandleByIndex, index)
            if handle is None:
                continue
            gpu: dict[str, Any] = {"index": index}
            if (util := figure(nv.nvmlDeviceGetUtilizationRates, handle)) is not None:
                gpu["util"] = util.gpu
            if (mem := figure(nv.nvmlDeviceGetMemoryInfo, handle)) is not None:
                gpu.update(mem_used_mb=mem.used / 2**20, mem_total_mb=mem.total / 2**20)
            if (temp := figure(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)) is not None:
                gpu["temp_c"] = temp
            if (power := figure(nv.nvmlDeviceGetPowerUsage, handle)) is not None:
                gpu["power_w"] = power / 1000.0
            gpus.append(gpu)
        return gpus


def nvml_handle(nv, props, index: int):
    """The NVML handle of the GPU torch describes with ``props`` (its index ``index``), or None.

    CUDA numbers only the visible GPUs, in ``CUDA_VISIBLE_DEVICES`` order and
    by default fastest first, while NVML numbers every GPU of the host, so the
    index is the last resort: the UUID names the very device (a MIG slice
    included), else the PCI bus id. A handle whose memory total is not the
    device's (within 10%) is another device, e.g. the parent of a MIG slice
    found by its bus id, whose used memory would be every slice's: None then.
    """
    uuid = str(getattr(props, "uuid", "") or "")
    lookups: list[tuple[Any, str | int]] = [
        (nv.nvmlDeviceGetHandleByUUID, u)
        for u in ([uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"] if uuid else [])
    ]
    if getattr(props, "pci_bus_id", None) is not None:
        bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        lookups.append((nv.nvmlDeviceGetHandleByPciBusId, bus_id))
    lookups.append((nv.nvmlDeviceGetHandleByIndex, index))
    for lookup, key in lookups:
        try:
            handle = lookup(key)
            total = nv.nvmlDeviceGetMemoryInfo(handle).total
        except nv.NVMLError:
            continue
        if abs(total - props.total_memory) <= 0.1 * props.total_memory:
            return handle
    return None


def system_event(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One ``system`` event payload from every rank's latest sample (None when none has one yet).

    Each rank's figures are also flattened into lists indexed by rank (None
    for a rank without the figure or without a sample yet), the shape the
    anomaly detectors read: ``rss_mb`` and the GPU memory figures, NVML's
    ``gpu_mem_used_mb`` included.
    """
    ranks = [s for s in samples if s]
    if not ranks:
        return None
    hosts: dict[str, dict[str, Any]] = {}
    host_fields = ("host_cpu_percent", "host_mem_percent", "host_mem_used_mb", "host_mem_total_mb")
    for s in ranks:
        # .get: a sample whose psutil part has never succeeded has no host figures.
        hosts.setdefault(s["host"], {"host": s["host"], **{k: s.get(k) for k in host_fields}})
        if s.get("gpus"):
            hosts[s["host"]]["gpus"] = s["gpus"]
    gpu_fields = ("gpu_mem_alloc_mb", "gpu_mem_reserved_mb", "gpu_mem_peak_mb", "gpu_mem_used_mb", "gpu_mem_total_mb")
    rank_fields = ("rank", "host", "cpu_percent", "rss_mb", *gpu_fields)
    main_host = next(iter(hosts.values()))
    by_rank = {s["rank"]: s for s in ranks}
    indexed = [by_rank.get(r, {}) for r in range(max(by_rank) + 1)]
    return {
        **{k: v for k, v in main_host.items() if k != "gpus"},
        "hosts": list(hosts.values()),
        "ranks": [{k: s[k] for k in rank_fields if k in s} for s in ranks],
        "gpus": main_host.get("gpus", []),
        "rss_mb": [s.get("rss_mb") for s in indexed],
        **{k: [s.get(k) for s in indexed] for k in gpu_fields if any(k in s for s in ranks)},
    }


# Bump when what the reference measures changes, so a resumed run does not score against a stale cache.
REFERENCE_DEFINITION = 3


class MusicEvaluator:
    """Samples with fixed seeds, their musical metrics, and a quality score against the validation pieces.

    With ``music.prompt_from_validation`` a sample opens with bars of a real
    piece. Its MIDI file keeps them (one hears what the model continued), but
    its metrics and syntax are those of what the model generated: the prompt's
    notes would flatter the quality score with real Bach.
    """

    def __init__(
        self,
        music_cfg,
        sample_cfg,
        tokenizer,
        val_pieces: list[np.ndarray],
        samples_dir: Path,
        resolution: int,
        corpus: Corpus | None = None,
        data_cfg=None,
    ):
        """``corpus`` and ``data_cfg`` (its split) give the tempos, voice names and metres of the data."""
        self.cfg, self.sample_cfg = music_cfg, sample_cfg
        self.tokenizer, self.val_pieces, self.dir, self.resolution = tokenizer, val_pieces, samples_dir, resolution
        self.special = {tokenizer.pad_token_id, tokenizer["BOS_None"], tokenizer["EOS_None"]}
        meta = corpus.meta if corpus is not None else {}
        self.voice_names = meta.get("voice_names")
        self.corpus_qpm = corpus_tempo(meta)
        self.val_qpm = [self.corpus_qpm] * len(val_pieces)
        self.train_pieces: list[np.ndarray] = []
        self.train_names: list[str] = []
        if corpus is not None and data_cfg is not None:
            train_ids, val_ids = split_pieces(corpus.names, data_cfg.val_fraction, data_cfg.split_seed)
            if meta.get("qpm"):
                self.val_qpm = [meta["qpm"][i] for i in val_ids]
            self.train_pieces = [corpus.piece(i) for i in train_ids]
            self.train_names = [corpus.names[i] for i in train_ids]
        self.meter_changes = bool(meta.get("meter_changes", False))
        self.constrained = sample_cfg.constrained and type(tokenizer).__name__ == "REMI"
        self.empty_bars = not (self.constrained and self.train_pieces) or has_empty_bars(self.train_pieces, tokenizer)
        self.training_index = self._training_index()
        self.reference, self.pool, self.calibration = self._reference()

    def _notes_and_bars(self, piece: np.ndarray) -> tuple[np.ndarray, float]:
        score = self._decode(piece.tolist())
        return mm.notes_from_score(score), mm.score_beats_per_bar(score)

    def _training_index(self) -> TrainingIndex | None:
        """Every 2-bar window of the training pieces, for memorization; None without them."""
        if not self.train_pieces:
            return None
        decoded = [self._notes_and_bars(piece) for piece in self.train_pieces]
        return TrainingIndex([n for n, _ in decoded], self.train_names, [b for _, b in decoded], self.resolution)

    def _decode(self, ids: list[int]):
        return self.tokenizer.decode([i for i in ids if i not in self.special])

    def _reference_key(self) -> str:
        """Digest of what shapes the reference: its settings, the metrics, the vocabulary and the pieces' tokens."""
        digest = hashlib.sha256(
            json.dumps(
                {
                    "definition": REFERENCE_DEFINITION,
                    "window_beats": self.cfg.reference_window_beats,
                    "resolution": self.resolution,
                    "metrics": list(mm.METRICS),
                    "vocab": self.tokenizer.vocab,
                    "samples": self.cfg.num_samples,
                },
                sort_keys=True,
            ).encode()
        )
        for piece in [*self.val_pieces, *self.train_pieces]:
            tokens = np.ascontiguousarray(piece, dtype=np.int64)
            digest.update(len(tokens).to_bytes(8, "little"))
            digest.update(tokens.tobytes())
        return digest.hexdigest()

    def _reference(self) -> tuple[dict[str, dict[str, float]], list[dict[str, float]], list[float]]:
        """Metrics of the validation pieces after the same decode the samples go through.

        Cached in the run with the key it was computed for, so a resume with
        other ``music.*`` or tokenizer settings, or other validation pieces,
        computes it again instead of scoring against a stale one.
        """
        cache, key = self.dir / "reference.json", self._reference_key()
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return cached["reference"], cached["pool"], cached["calibration"]
        decoded = [self._notes_and_bars(piece) for piece in self.val_pieces]
        notes, beats = [n for n, _ in decoded], [b for _, b in decoded]
        reference = mm.reference_stats(notes, self.resolution, beats, self.cfg.reference_window_beats)
        # The same windows, one row each, measured like a sample: the real music the score is calibrated on.
        pool = [
            self._row(window, bar)[0]
            for piece, bar in decoded
            for window in mm.bar_windows(piece, bar, self.cfg.reference_window_beats)
        ]
        if self.training_index is not None:
            reference[quality.MEMORIZATION] = mm.summarize(pool, [quality.MEMORIZATION])[quality.MEMORIZATION]
        calibration = quality.calibration(pool, self.cfg.num_samples, mm.METRICS)
        self.dir.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "reference": reference, "pool": pool, "calibration": calibration}))
        return reference, pool, calibration

    def _row(self, notes: np.ndarray, beats_per_bar: float) -> tuple[dict[str, float], dict | None]:
        """A piece's metrics, with its memorization share when there is a training set, and that memorization."""
        row = mm.compute_all(notes, self.resolution, beats_per_bar)
        if self.training_index is None:
            return row, None
        found = self.training_index.lookup(notes, beats_per_bar)
        row[quality.MEMORIZATION] = found.share
        return row, found.as_dict()

    def _prompt(self, index: int) -> list[int]:
        bos = self.tokenizer["BOS_None"]
        if not self.cfg.prompt_from_validation or not self.val_pieces:
            return [bos]
        piece = self.val_pieces[index % len(self.val_pieces)].tolist()
        bar = self.tokenizer["Bar_None"]
        bars = [i for i, t in enumerate(piece) if t == bar]
        end = bars[self.cfg.prompt_bars] if len(bars) > self.cfg.prompt_bars else len(piece)
        return [bos] + piece[:end]

    def _tempo(self, index: int) -> float:
        """The tempo of sample ``index``'s MIDI file: its prompt piece's, or the corpus's."""
        if self.sample_cfg.tempo_from == "prompt" and self.cfg.prompt_from_validation and self.val_qpm:
            return self.val_qpm[index % len(self.val_qpm)]
        return self.corpus_qpm

    @torch.no_grad()
    def run(self, model: MusicTransformer, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        device = next(model.parameters()).device
        max_tokens = self.cfg.sample_tokens or self.sample_cfg.max_tokens
        samples, metric_rows, valid = [], [], []
        for index, seed in enumerate(self.cfg.sample_seeds()):
            prompt = self._prompt(index)
            generator = torch.Generator(device=device).manual_seed(seed)
            grammar = (
                RemiGrammar(self.tokenizer, self.resolution, self.meter_changes, self.empty_bars)
                if self.constrained
                else None
            )
            ids = model.generate(
                torch.tensor([prompt], device=device),
                max_tokens,
                self.sample_cfg.temperature,
                self.sample_cfg.top_k,
                generator=generator,
                stop_token=self.tokenizer["EOS_None"],
                allowed=grammar,
            )[0].tolist()
            body = [i for i in ids if i not in self.special]
            tokens = [self.tokenizer[i] for i in body]
            prompt_tokens = tokens[: len([i for i in prompt if i not in self.special])]
            score = self._decode(ids)
            path = self.dir / f"step-{step:07d}-seed-{seed}.mid"
            finish_score(score, self._tempo(index), self.voice_names).dump_midi(str(path))
            prompt_end = _prompt_end_beats(prompt_tokens)
            metrics, memorization = self._row(_notes_from(score, prompt_end), _beats_per_bar_at(score, prompt_end))
            syntax = _continuation_syntax(prompt_tokens, tokens, self.resolution)
            samples.append(
                {
                    "path": str(path),
                    "seed": seed,
                    "prompt": len(prompt) - 1,
                    "n_tokens": len(body),
                    "prompt_end_beats": prompt_end,
                    "syntax": {
                        "valid": syntax.valid,
                        "note_validity": syntax.note_validity,
                        "n_notes": syntax.n_notes,
                        "n_errors": syntax.n_errors,
                        "first_error": syntax.first_error,
                    },
                    "metrics": metrics,
                    "memorization": memorization,
                }
            )
            metric_rows.append(metrics)
            valid.append(syntax.valid)
        means = {name: _nanmean([row[name] for row in metric_rows]) for name in metric_rows[0]}
        means["syntax_validity_rate"] = sum(valid) / len(valid)
        calibrated = quality.calibrated_score(metric_rows, self.pool, self.calibration, mm.METRICS)
        return {
            "samples": samples,
            "metrics": means,
            "quality_score": calibrated["score"],
            "quality_interval": calibrated["interval"],
            "quality_raw": calibrated["raw"],
            "quality": calibrated["metrics"],
            "reference": {k: {"mean": v["mean"], "std": v["std"]} for k, v in self.reference.items()},
            "seconds": round(time.perf_counter() - started, 3),
        }


def _prompt_end_beats(tokens: list[str]) -> float:
    """Where a REMI prompt ends, in beats: the end of its last bar, as miditok's decoder places bars.

    A prompt is whole bars of a piece (it stops before a Bar token), so what the
    model generates from its first Bar on starts here. Each Bar advances by the
    length of the bar before it, set by the TimeSig tokens read so far (4/4
    before any, as in miditok).
    """
    start, length, bars = 0.0, 4.0, 0
    for token in tokens:
        kind, _, value = token.partition("_")
        if kind == "Bar":
            start += length if bars else 0.0
            bars += 1
        elif kind == "TimeSig":
            num, _, den = value.partition("/")
            length = int(num) * 4.0 / int(den)
    return start + length if bars else 0.0


def _notes_from(score, start_beats: float) -> np.ndarray:
    """The score's notes whose onset is at or after ``start_beats``, shifted to start there.

    The generated part is measured from the prompt's end, a bar line, so its bars
    keep their place on the metric grid and the prompt's time does not count as
    leading silence. Notes the model adds inside the prompt's last bar sit among
    the prompt's notes and are left out with them.
    """
    notes = mm.notes_from_score(score)
    if start_beats <= 0:
        return notes
    kept = notes[notes[:, mm.START] >= start_beats - 1e-9].copy()
    kept[:, mm.START] = np.maximum(kept[:, mm.START] - start_beats, 0.0)
    return kept


def _beats_per_bar_at(score, beats: float) -> float:
    """Bar length in beats under the time signature in force at ``beats`` (the first one at 0)."""
    tick = beats * score.ticks_per_quarter
    sigs = [s for s in score.time_signatures if s.time <= tick + 1e-6]
    if not sigs:
        return mm.score_beats_per_bar(score)
    return sigs[-1].numerator * 4.0 / sigs[-1].denominator


def _continuation_syntax(prompt: list[str], tokens: list[str], resolution: int) -> mm.SyntaxReport:
    """The syntax report of what follows ``prompt`` in ``tokens``, checked in the prompt's context.

    Checking the generated tokens alone would flag a valid continuation (a note
    at the prompt's last Position has no Position of its own), so the whole
    sequence is checked and the prompt's own counts are subtracted: the check
    reads left to right and the prompt ends with a complete note (before a
    Bar), so its counts are those of that prefix of the whole.
    """
    whole = mm.check_remi_syntax(tokens, resolution)
    if not prompt:
        return whole
    own = mm.check_remi_syntax(prompt, resolution)
    # The first error past the prompt, indexed in the generated tokens. The prompt comes from the
    # tokenizer and has none; if it had one, the continuation's first error is not known.
    first_error = None
    if whole.first_error is not None and own.n_errors == 0:
        index, _, rest = whole.first_error.partition(": ")
        first_error = f"{int(index) - len(prompt)}: {rest}"
    return mm.SyntaxReport(
        whole.n_tokens - own.n_tokens,
        whole.n_notes - own.n_notes,
        whole.n_valid_notes - own.n_valid_notes,
        whole.n_errors - own.n_errors,
        first_error,
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


class Sinks:
    """Optional mirrors of the scalars in TensorBoard and W&B (offline). Podium's events stay the source of truth."""

    def __init__(self, cfg, run_dir: Path, run_name: str, config: dict[str, Any]):
        self.tensorboard = self.wandb = None
        self.problems: list[str] = []
        if cfg.tensorboard:
            try:
                from tensorboard.compat.proto.summary_pb2 import Summary
                from torch.utils.tensorboard.writer import FileWriter
            except ImportError:
                self.problems.append(
                    "sinks.tensorboard is on but the tensorboard package is not installed "
                    "(pip install tensorboard); continuing without it"
                )
            else:
                try:
                    self.tensorboard, self._summary = FileWriter(str(run_dir / "tensorboard")), Summary
                except Exception as exc:  # e.g. a folder that cannot be created or written: the run goes on
                    self.problems.append(
                        f"sinks.tensorboard is on but its writer could not be created in "
                        f"{run_dir / 'tensorboard'} ({type(exc).__name__}: {exc}); "
                        "continuing without it"
                    )
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                self.problems.append(
                    "sinks.wandb is on but the wandb package is not installed (pip install wandb); "
                    "continuing without it"
                )
            else:
                os.environ.setdefault("WANDB_MODE", "offline")
                try:
                    self.wandb = wandb.init(
                        project=cfg.wandb_project, name=run_name, dir=str(run_dir), config=config, mode="offline"
                    )
                except Exception as exc:  # settings, files, its service: a mirror is not worth the run
                    self.problems.append(
                        f"sinks.wandb is on but wandb.init failed ({type(exc).__name__}: {exc}); continuing without it"
                    )

    def scalars(self, prefix: str, step: int, values: dict[str, Any]) -> list[str]:
        """Mirror the numbers among ``values``; returns the problems met (a sink that fails is dropped)."""
        problems = []
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tensorboard is not None:
            # One event for all of a step's scalars: TensorBoard's writer thread serialises and checksums each
            # event in Python, and an event per scalar cost it ten times the CPU (about 1% of a core in a run).
            summary_values = [
                self._summary.Value(tag=f"{prefix}/{name}", simple_value=value) for name, value in numbers.items()
            ]
            self.tensorboard.add_summary(self._summary(value=summary_values), step)
        if self.wandb is not None:
            try:
                self.wandb.log({f"{prefix}/{k}": v for k, v in numbers.items()}, step=step)
            except Exception as exc:  # its service died, its disk filled: the run goes on without the mirror
                self.wandb = None
                problems.append(
                    f"sinks.wandb failed at step {step} ({type(exc).__name__}: {exc}); "
                    "continuing without it (events.jsonl has every value)"
                )
        return problems

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as exc:  # the run is over and its events are complete: say so, do not fail it
                print(f"sinks.wandb: finish failed ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)


class StepClock:
    """``debug.step_times``: host wall-clock and process CPU time at the end of every step (rank 0).

    For ``bench/overhead.py``, which needs each step's own time, log steps
    included (the ``step_time`` in ``metrics`` events is an interval mean that
    leaves out the log step's own work). Two clock reads and three appends per
    step; written once, when training ends. No device sync: on CUDA a step's
    time is the host's, and only intervals ending at a log step (where the
    engine reads its device values) hold all their device work.
    ``process_time`` counts every thread of the process (sampler, watchdog).
    """

    def __init__(self, path: Path):
        self.path = path
        self.steps: list[int] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self, step: int) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.steps.append(step)

    def save(self) -> None:
        self.path.write_text(json.dumps({"step": self.steps, "wall": self.wall, "cpu": self.cpu}))


class Profiler:
    """Records the next ``steps`` steps with torch.profiler into ``run_dir/profiles``.

    The trace is written by ``tensorboard_trace_handler``: a ``*.pt.trace.json``
    that Chrome's tracing, Perfetto and TensorBoard's profiler plugin all open.
    """

    def __init__(self, run_dir: Path, device: torch.device, steps: int, start_step: int):
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.dir = run_dir / "profiles" / f"step-{start_step:07d}"
        self.cuda = device.type == "cuda"
        self.remaining = steps
        self.steps = steps
        self.profile = torch.profiler.profile(
            activities=activities, on_trace_ready=torch.profiler.tensorboard_trace_handler(str(self.dir))
        )
        self.profile.start()

    def step_done(self) -> dict[str, Any] | None:
        """Count a step; after the last one, stop and return the ``profile`` event payload."""
        self.remaining -= 1
        if self.remaining > 0:
            return None
        self.profile.stop()
        sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        averages = sorted(self.profile.key_averages(), key=lambda e: getattr(e, sort), reverse=True)[:10]
        top = [
            {
                "name": e.key,
                "calls": e.count,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "cpu_total_ms": e.cpu_time_total / 1e3,
                **({"self_cuda_ms": e.self_device_time_total / 1e3} if self.cuda else {}),
            }
            for e in averages
        ]
        traces = sorted(self.dir.glob("*.pt.trace.json"))
        return {
            "path": str(traces[-1]) if traces else str(self.dir),
            "steps": self.steps,
            "top": top,
            "table": self.profile.key_averages().table(sort_by=sort, row_limit=10),
        }
