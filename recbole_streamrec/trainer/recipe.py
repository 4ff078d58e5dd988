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
* **Time budget** (``time_budget: ~``, seconds of training: optimiser steps and their data, STREAM-Rec's annotation
  too, not validation or test). The epoch ends after the step that spends it, that epoch is validated whatever
  ``eval_step`` says, and training stops there, so runs compared "at equal budget" get the same training time
  whatever their epoch length. (Under DDP, where ranks' clocks differ, the epoch is not cut and training stops at
  the first validation past the budget.) With ``lr_decay_horizon: budget`` the decay ends when the budget does
  (the learning rate follows the training clock, not the epoch count: budget-aware training, Li, Yumer & Ramanan,
  ICLR 2020), so a budgeted run ends at its floor learning rate instead of being cut off half-way down the decay.
  STREAM-Rec's stages read ``pt_`` / ``sft_`` / ``rl_time_budget`` (each stage's own budget; SFT's covers all its
  rounds, annotation included).
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
import time
from dataclasses import dataclass
from functools import lru_cache
from logging import getLogger
from typing import Any, Callable, Optional

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
def lr_factor(step: int, *, schedule: str, warmup_steps: int, decay_steps: int, min_ratio: float,
              progress: Optional[float] = None) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps (pure; tested by hand).

    ``progress`` (a fraction in [0, 1], e.g. training seconds over the time budget) replaces the step count's
    progress through the decay; the warm-up is counted in steps either way.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or (progress is None and decay_steps <= warmup_steps):
        return 1.0
    if progress is None:
        progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
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
    time_budget: Optional[float] = None  # seconds of training; ``None``: no budget
    decay_horizon: str = "epochs"  # the decay ends after ``decay_epochs`` (epochs) or with the time budget (budget)

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
        # time_budget and lr_decay_horizon are checked at start-up (config.validate_config), the stage keys too
        budget, horizon = key("time_budget", None), key("lr_decay_horizon", "epochs")
        if horizon == "budget" and budget is None:  # e.g. STREAM-Rec's shared recipe, whose stages have their budgets
            horizon = "epochs"
        return cls(schedule=schedule, warmup_steps=int(key("warmup_steps", 0)), decay_epochs=key("lr_decay_epochs", None),
                   min_ratio=float(key("min_lr_ratio", 0.0)), weight_decay=float(key("weight_decay", 0.0) or 0.0),
                   time_budget=None if budget is None else float(budget), decay_horizon=horizon)


def decay_groups(model: torch.nn.Module, weight_decay: float,
                 lr_of: Optional[Callable[[str], Optional[float]]] = None) -> list[dict]:
    """AdamW parameter groups: decay on matrices and embeddings, none on layer-norm scales and biases.

    ``lr_of(name)`` gives a parameter its own learning rate (``None``: the optimiser's); such parameters form
    groups of their own after the two plain ones, each with an ``lr`` (the schedule scales every group alike).
    """
    groups: dict[tuple[bool, Optional[float]], list] = {(True, None): [], (False, None): []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim < 2 or "layer_norm" in name)
        groups.setdefault((decay, lr_of(name) if lr_of else None), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, **({} if lr is None else {"lr": lr})}
            for (decay, lr), params in groups.items() if params or lr is None]


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
def stopping_rule(delta: Optional[float], budget_spent: Optional[Callable[[], bool]] = None):
    """RecBole's ``Trainer.fit`` with :func:`early_stopping` at ``delta``, and stopped once ``budget_spent()``
    (nothing changes for ``None, None``)."""
    if delta is None and budget_spent is None:
        yield
        return
    original = recbole_trainer.early_stopping

    def rule(value, best, cur_step, max_step, bigger=True):
        if delta is None:
            best, cur_step, stop, update = original(value, best, cur_step, max_step, bigger)
        else:
            best, cur_step, stop, update = early_stopping(value, best, cur_step, max_step, bigger, delta=float(delta))
        return best, cur_step, stop or bool(budget_spent and budget_spent()), update

    recbole_trainer.early_stopping = rule  # the name fit looks up; restored even if training fails
    try:
        yield
    finally:
        recbole_trainer.early_stopping = original


class _UntilSpent:
    """A training loader that stops yielding batches once ``spent()`` (checked after each step); else the loader."""

    def __init__(self, data, spent: Callable[[], bool]) -> None:
        self._data, self._spent = data, spent

    def __iter__(self):
        for batch in self._data:
            yield batch
            if self._spent():
                return

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)


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
        self.trained_seconds = 0.0  # training clock of the run (STREAM-Rec: of the running stage)
        self._clock_started: Optional[float] = None
        self._budget_logged = False  # "time budget spent" is logged once per fit
        super().__init__(config, model)

    # ---- the training clock and the time budget ----
    @contextlib.contextmanager
    def clocked(self):
        """Count the time spent inside as training time (for ``time_budget`` and a ``budget`` decay horizon)."""
        self._clock_started = time.perf_counter()
        try:
            yield
        finally:
            self.trained_seconds += time.perf_counter() - self._clock_started
            self._clock_started = None

    def training_seconds(self) -> float:
        """Training seconds so far, the running epoch included."""
        running = time.perf_counter() - self._clock_started if self._clock_started is not None else 0.0
        return self.trained_seconds + running

    def budget_spent(self) -> bool:
        budget = self.recipe.time_budget
        if budget is None or self.training_seconds() < budget:
            return False
        if not self._budget_logged:
            getLogger().info(f"time budget spent: {self.training_seconds():.0f}s of training (budget {budget:g}s); "
                             "the epoch ends and training stops at its validation")
            self._budget_logged = True
        return True

    def until_spent(self, train_data):
        """``train_data`` that ends the epoch once the time budget is spent (after at least one step).

        Under DDP the budget is checked at validation only: ranks whose clocks differ must not stop at different
        steps.
        """
        if self.recipe.time_budget is None or not self.config["single_spec"]:
            return train_data
        return _UntilSpent(train_data, self.budget_spent)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._budget_logged = False
        spent = self.budget_spent if self.recipe.time_budget is not None else None
        with stopping_rule(self.config["stopping_delta"], spent):
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _build_optimizer(self, **kwargs):
        recipe = self.recipe
        kwargs.pop("params", None)  # always the model's trainable parameters, grouped for weight decay
        lr_of = kwargs.pop("lr_of", None)  # per-parameter learning rates (decay_groups)
        kwargs.setdefault("weight_decay", recipe.weight_decay)
        optimizer = super()._build_optimizer(params=decay_groups(self.model, kwargs["weight_decay"], lr_of), **kwargs)
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
        progress = None
        if recipe.decay_horizon == "budget":  # the decay follows the training clock to the end of the budget
            progress = self.training_seconds() / recipe.time_budget
        return lr_factor(step, schedule=recipe.schedule, warmup_steps=recipe.warmup_steps,
                         decay_steps=decay_steps, min_ratio=recipe.min_ratio, progress=progress)

    def optimizer_steps_per_epoch(self, train_data) -> int:
        """Optimiser steps one epoch takes (STREAM-Rec's GRPO stage overrides this)."""
        return len(train_data)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.start_progress(train_data, epoch_idx)
        with self.clocked():
            loss = super()._train_epoch(self.until_spent(train_data), epoch_idx, loss_func=loss_func,
                                        show_progress=show_progress)
        self.validate_if_spent()
        return loss

    def validate_if_spent(self) -> None:
        """A spent budget validates the epoch that spent it, whatever ``eval_step`` says (the stop is decided there)."""
        if self.recipe.time_budget is not None and self.config["single_spec"] and self.eval_step > 0 \
                and self.budget_spent():
            self.eval_step = 1

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
        state["trained_seconds"] = float(self.trained_seconds)
        return state

    def restore_training_state(self, checkpoint: dict) -> None:
        """Continue the schedule (and the training clock) of a resumed run where it stopped."""
        self.trained_seconds = float(checkpoint.get("trained_seconds", 0.0))
        saved = checkpoint.get("scheduler")
        if saved is not None and self.scheduler is not None:
            self.scheduler.last_epoch = int(saved["last_epoch"])
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def log_recipe(self, label: str = "") -> None:
        r = self.recipe
        horizon = (f"the time budget ({r.time_budget:g}s of training)" if r.decay_horizon == "budget"
                   else f"{r.decay_epochs or self.epochs} epochs")
        budget = f", time budget {r.time_budget:g}s of training" if r.time_budget is not None else ""
        decay = "no decay" if r.schedule == "constant" else f"decay over {horizon} to {r.min_ratio:g}×lr"
        getLogger().info(f"recipe{label}: lr schedule {r.schedule}, warm-up {r.warmup_steps} steps, {decay}, "
                         f"weight decay {r.weight_decay:g}, "
                         f"early stopping: {stopping_line(self.config['stopping_delta'])}{budget}")
