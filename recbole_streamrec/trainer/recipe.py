"""The training recipe of the generative models: precision, threads, weight decay and the learning-rate schedule.

* **Precision** (``precision: auto | fp32 | bf16``). bf16 autocast pays only on hardware that computes in bf16
  natively: a GPU, or a CPU with ``avx512_bf16`` / ``amx_bf16``. Elsewhere oneDNN emulates it and a training
  step is *slower* than fp32 (measured 3–6× on an AVX2-only EPYC), so ``auto`` picks fp32 there. The loss is
  always computed from fp32 logits (:meth:`GenerativeRecommender.logits` leaves autocast for the output layer).
  On a CPU denormals are flushed to zero (they made bf16 steps several times slower as training went on).
* **Threads** (``threads: ~``): torch intra-op threads, default one per physical core. Two jobs side by side
  on one machine should each get ``--threads=1``: a two-thread job next to any other busy process waits at
  OpenMP barriers and runs 3–4× slower.
* **Weight decay** (``weight_decay``): AdamW's decoupled decay on every matrix and embedding, none on the
  layer-norm scales (the usual transformer recipe).
* **Schedule** (``lr_schedule: constant | cosine | linear``, ``warmup_steps``, ``lr_decay_epochs``,
  ``min_lr_ratio``): linear warm-up over ``warmup_steps`` optimiser steps, then the decay down to
  ``min_lr_ratio × lr`` at ``lr_decay_epochs`` epochs (default: the run's ``epochs``) and flat after it.
  STREAM-Rec's stages read ``<stage>_warmup_steps`` / ``<stage>_lr_schedule`` / ``<stage>_lr_decay_epochs`` /
  ``<stage>_weight_decay`` (``pt``, ``sft``, ``rl``) where set, the shared keys otherwise.
* **Early stopping** (``stopping_delta: ~``): RecBole counts a validation score *equal* to the best as an
  improvement (``value >= best``), so once the schedule has decayed the learning rate to zero, identical scores
  reset the patience for ever. A number ``d`` counts only scores above ``best + d``; the saved model is then the
  first epoch that reached the best score.

:class:`RecipeMixin` puts these into a RecBole ``Trainer`` without copying its ``fit``: the scheduler is stepped
by a post-hook on the optimiser, so RecBole's own training loop drives it, and its state travels with the
checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from logging import getLogger
from typing import Any, Optional

import recbole.trainer.trainer as recbole_trainer
import torch

from recbole_streamrec.trainer.progress import Progress, progress_interval

SCHEDULES = ("constant", "cosine", "linear")
PRECISIONS = ("auto", "fp32", "bf16")


# ---- precision and threads ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: Optional[str], device: torch.device | str) -> tuple[bool, str]:
    """``(use bf16 autocast, why)`` for the configured ``precision`` on ``device``."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision == "bf16", f"precision: {precision} (set by configuration)"
    device_type = torch.device(device).type
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, "precision: bf16 autocast (auto: the GPU computes bf16 natively)"
        return False, "precision: fp32 (auto: this GPU has no bf16)"
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if device_type == "cpu" and native:
        return True, f"precision: bf16 autocast (auto: the CPU has native bf16: {', '.join(native)})"
    return False, "precision: fp32 (auto: no native bf16 on this CPU, where emulated bf16 is slower than fp32)"


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:
        allowed = os.cpu_count() or 1
    cores, core = set(), {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("physical id", "core id"):
                    core[key] = value.strip()
                elif not line.strip() and core:
                    cores.add((core.get("physical id"), core.get("core id")))
                    core = {}
    except OSError:
        pass
    if core:
        cores.add((core.get("physical id"), core.get("core id")))
    return max(1, min(len(cores) or allowed, allowed))


def apply_threads(threads: Optional[int]) -> str:
    """Set torch's intra-op threads (default: one per physical core); returns the log line."""
    n = int(threads) if threads else physical_cores()
    if n < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    torch.set_num_threads(n)
    why = "set by configuration" if threads else "one per physical core"
    return f"torch threads: {n} ({why}; for two jobs side by side give each --threads=1)"


def apply_precision(config) -> str:
    """Resolve ``precision`` into RecBole's ``enable_amp`` (read by every trainer); returns the log line.

    On a CPU, denormal floats are also flushed to zero: once the weights have trained a while, bf16 steps that
    meet denormals ran 2–5× slower here (an SFT epoch went 7 s → 20 s → 35 s; flushed, 7 s every epoch).
    """
    enable, why = resolve_precision(config["precision"], config["device"])
    config["enable_amp"] = enable
    if torch.device(config["device"]).type == "cpu" and torch.set_flush_denormal(True):
        why += "; denormals flushed to zero"
    return why


# ---- learning-rate schedule ------------------------------------------------------------------------------
def lr_factor(step: int, *, schedule: str, warmup_steps: int, decay_steps: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps (pure; tested by hand)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or decay_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (decay_steps - warmup_steps))
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        shape = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


@dataclass(frozen=True)
class Recipe:
    """One stage's optimiser recipe, read from the config (``prefix`` picks a STREAM-Rec stage's keys)."""

    schedule: str = "constant"
    warmup_steps: int = 0
    decay_epochs: Optional[int] = None
    min_ratio: float = 0.0
    weight_decay: float = 0.0

    @classmethod
    def from_config(cls, config, prefix: str = "") -> "Recipe":
        def key(name: str, default: Any) -> Any:
            for full in ((f"{prefix}_{name}",) if prefix else ()) + (name,):
                value = config[full]
                if value is not None:
                    return value
            return default

        schedule = str(key("lr_schedule", "constant")).lower()
        if schedule not in SCHEDULES:
            raise ValueError(f"{prefix + '_' if prefix else ''}lr_schedule must be one of {SCHEDULES}, not {schedule!r}")
        return cls(schedule=schedule, warmup_steps=int(key("warmup_steps", 0)), decay_epochs=key("lr_decay_epochs", None),
                   min_ratio=float(key("min_lr_ratio", 0.0)), weight_decay=float(key("weight_decay", 0.0) or 0.0))


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay on matrices and embeddings, none on layer-norm scales and biases."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (keep if param.ndim < 2 or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


# ---- early stopping ----------------------------------------------------------------------------------------
def early_stopping(value: float, best: float, cur_step: int, max_step: int, bigger: bool = True, *,
                   delta: Optional[float] = None) -> tuple[float, int, bool, bool]:
    """RecBole's ``early_stopping`` (same arguments and ``(best, cur_step, stop, update)``), with a margin.

    ``delta=None`` is RecBole's rule: ``value >= best`` is an improvement. A number counts only
    ``value > best + delta`` (``value < best - delta`` when smaller is better).
    """
    if delta is None:
        improved = value >= best if bigger else value <= best
    else:
        improved = value > best + delta if bigger else value < best - delta
    if improved:
        return value, 0, False, True
    return best, cur_step + 1, cur_step + 1 > max_step, False


def stopping_line(delta: Optional[float]) -> str:
    """How early stopping counts an improvement, for the recipe's log line."""
    if delta is None:
        return "a tie with the best resets the patience (RecBole's rule)"
    return f"only a score above best + {delta:g} resets the patience"


@contextlib.contextmanager
def stopping_rule(delta: Optional[float]):
    """RecBole's ``Trainer.fit`` with :func:`early_stopping` at ``delta`` (nothing changes for ``None``)."""
    if delta is None:
        yield
        return
    original = recbole_trainer.early_stopping

    def with_delta(value, best, cur_step, max_step, bigger=True):
        return early_stopping(value, best, cur_step, max_step, bigger, delta=float(delta))

    recbole_trainer.early_stopping = with_delta  # the name fit looks up; restored even if training fails
    try:
        yield
    finally:
        recbole_trainer.early_stopping = original


class RecipeMixin:
    """Mix in before a RecBole ``Trainer``: weight-decay groups and a per-step warm-up/decay schedule.

    The subclass sets ``self.recipe`` (default: the shared keys) before calling ``_build_optimizer``, and
    ``self.epochs`` is the decay horizon unless ``lr_decay_epochs`` says otherwise. Steps per epoch are known
    once the training data is: ``_train_epoch`` records them before RecBole's loop runs.
    """

    def __init__(self, config, model):
        self.recipe = Recipe.from_config(config)
        self.scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None
        self.steps_per_epoch: Optional[int] = None
        self.progress: Optional[Progress] = None  # the running epoch's progress lines (``progress_interval``)
        self.rows_per_step = 0
        super().__init__(config, model)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        with stopping_rule(self.config["stopping_delta"]):
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _build_optimizer(self, **kwargs):
        recipe = self.recipe
        kwargs.pop("params", None)  # always the model's trainable parameters, grouped for weight decay
        kwargs.setdefault("weight_decay", recipe.weight_decay)
        optimizer = super()._build_optimizer(params=decay_groups(self.model, kwargs["weight_decay"]), **kwargs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        optimizer.register_step_post_hook(self._after_step)
        return optimizer

    def _after_step(self, *_) -> None:
        self.scheduler.step()
        if self.progress is not None:
            self.progress.tick(1, self.rows_per_step)

    def _lr_factor(self, step: int) -> float:
        recipe = self.recipe
        epochs = recipe.decay_epochs or self.epochs
        decay_steps = epochs * (self.steps_per_epoch or 1)
        return lr_factor(step, schedule=recipe.schedule, warmup_steps=recipe.warmup_steps,
                         decay_steps=decay_steps, min_ratio=recipe.min_ratio)

    def optimizer_steps_per_epoch(self, train_data) -> int:
        """Optimiser steps one epoch takes (STREAM-Rec's GRPO stage overrides this)."""
        return len(train_data)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.start_progress(train_data, epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def start_progress(self, train_data, epoch_idx: int) -> None:
        """Steps of this epoch (for the schedule) and its progress lines, before the epoch runs."""
        self.steps_per_epoch = self.optimizer_steps_per_epoch(train_data)
        stage = getattr(self, "stage", None)
        label = f"[{stage}] epoch {epoch_idx}" if stage else f"epoch {epoch_idx}"
        rows = getattr(train_data, "sample_size", 0) or 0
        self.rows_per_step = rows // max(len(train_data), 1) if self.steps_per_epoch == len(train_data) else 0
        self.progress = Progress(label, self.steps_per_epoch, progress_interval(self.config), unit="steps")

    def _checkpoint_state(self, epoch: int) -> dict:
        state = super()._checkpoint_state(epoch)
        if self.scheduler is not None:
            state["scheduler"] = {"last_epoch": self.scheduler.last_epoch}
        return state

    def restore_training_state(self, checkpoint: dict) -> None:
        """Continue the schedule of a resumed run where it stopped."""
        saved = checkpoint.get("scheduler")
        if saved is not None and self.scheduler is not None:
            self.scheduler.last_epoch = int(saved["last_epoch"])
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def log_recipe(self, label: str = "") -> None:
        r = self.recipe
        getLogger().info(f"recipe{label}: lr schedule {r.schedule}, warm-up {r.warmup_steps} steps, decay over "
                         f"{r.decay_epochs or self.epochs} epochs to {r.min_ratio:g}×lr, weight decay {r.weight_decay:g}, "
                         f"early stopping: {stopping_line(self.config['stopping_delta'])}")
