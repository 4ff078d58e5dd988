"""STREAM-Rec's staged trainer: ``stages`` (default pretrain → sft → rl) run in order, each handing over
through checkpoint files, each evaluated on valid and test, then a PT / SFT / RL table is printed.

Files (``<checkpoint_dir>/STREAMRec-<dataset>[-tag]-…``):
``-<stage>.pth`` best model of the stage (the hand-over), ``-<stage>-last.pth`` resume point,
``-pi_ref.pth`` the frozen stage-1 model whose encoder + direct decoder are π_ref.

Stage 1 and each SFT round use RecBole's own ``fit`` (early stopping on ``valid_metric``); stage 2
alternates annotation and optimisation in rounds until validation stops improving; stage 3 runs GRPO
(:mod:`recbole_streamrec.trainer.grpo`). ``--stages=[rl]`` with ``init_checkpoint`` runs or resumes a single
stage from a given checkpoint; ``stages: [pretrain, rl]`` is the "pure RL" schedule. ``init_checkpoint`` may
also be a trained TIGER of the same T5 and semantic IDs: with ``stages: [sft, rl]`` that TIGER *is* stage 1
(its encoder, E and decoder become the encoder, E and both decoders, and π_ref), so STREAM-Rec's reasoning
is measured on top of exactly the one-step model it is compared with (not the paper's stage 1: no
lengthened targets). With ``dpo_weight: 0`` SFT needs no π_ref, so ``stages: [sft]`` without ``init_checkpoint``
trains the reasoning policy from scratch (e.g. a collaborative trace against TIGER at the same recipe).

Hand-over stage 1 → stage 2 (``sft_init_decoder``): at the start of SFT the stage-1 direct decoder is
evaluated as TIGER on validation (logged, kept as ``direct_valid_result``), then with ``direct``
(default) the reasoning decoder takes its weights, so SFT starts from the decoder that already predicts
the item (stage 1 trains it on ``[codes(i); EOS]`` beside the lengthened targets) instead of one that only
saw item codes after 2·m neighbour tokens; ``reasoning`` keeps the stage-1 reasoning decoder (the paper).
Two model keys make that start count (``recbole_streamrec.model.streamrec``): with ``reasoning_levels: cyclic``
the annotated trace runs coarse to fine (token i is a level-(i mod m) code), so the decoder taken from stage 1
already predicts its first tokens, and ``reasoning_decoding: joint`` keeps several traces at evaluation, so the
top-k is not tied to one trace. Measured on ml-100k (quick preset, ``docs/results/reasoning-decoding/``): one
SFT epoch reaches the stage-1 direct decoder's validation NDCG@10 (0.0423 vs 0.0435), where a trace over all of
ℂ reached 0.0222–0.0350 (and one greedy trace of the cyclic model 0.0273). A third key keeps the item where stage 1
predicted it: with ``trace_separator: true`` the decoder reads the start token again after the trace, so the item's
codes follow it as in the direct decoder. Measured on amazon2018-scientific from a converged CPU-preset TIGER
(``docs/results/amazon2018-scientific-cpu/handover-separator/``): one SFT epoch at 1e-4 reaches valid 0.0704 with it
and 0.0633 without, against the direct decoder's 0.0752, so on that dataset the first epoch still falls short.
A fourth key is for a converged stage 1 (e.g. a TIGER through ``init_checkpoint``), which SFT must move gently, at
a low ``sft_learning_rate``: at such a rate the item's codes do not learn to read the trace within an epoch (with
the first annotation the trace spells the target, so reading it is a copy; ``bench/position_nll.py``), and STREAM-Rec
decodes worse than stage 1 until they do, because every trace of the joint search then leads to the same items.
``sft_attention_learning_rate`` gives the policy decoder's self-attention, the one path from the trace to the item,
its own rate, so the copy is learnt while the rest of stage 1 moves at ``sft_learning_rate``. Measured from the
paper-size TIGER on amazon2018-scientific (``docs/results/streamrec-scientific-paper-attention-lr/``): at the
hand-over STREAM-Rec's decoding scores valid NDCG@10 0.0681 against the same weights' 0.0770 as TIGER; at 1e-3 the
item copies every code of the trace after three epochs (at 1.5e-4 only the first), but validation ties the run
without the key (0.0764 against 0.0758) and the first epoch still falls short of stage 1 (0.0724).
What keeps stage 1 is two more keys: ``trace_gate`` puts the item's view of the trace behind a learnt per-head bias
that starts closed (at the hand-over the item then sees ``[start, codes(i)]`` as stage 1's direct decoder did), and
``item_beam: distinct`` lets no item fill two of joint decoding's beams through two traces. With both, the hand-over
decodes as stage 1 before any SFT step (valid 0.0769 against 0.0770, ``docs/results/streamrec-scientific-paper-gate/``;
0.0701 with the distinct beam alone), and the first SFT epoch at ``sft_learning_rate`` 5e-5 validates at 0.0777
(0.0764 with another seed). SFT trains the gate at ``trace_gate_learning_rate`` (logged every epoch); there it closed further in every run (−8 →
−10), so the item kept ignoring the trace.
"""

from __future__ import annotations

import copy
import math
import os
from contextlib import nullcontext
from time import time
from typing import Callable, Optional

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_streamrec.data.batching import shard_weight
from recbole_streamrec.distributed import rank, sum_across_ranks, world_size
from recbole_streamrec.trainer.checkpoint import (
    SafeCheckpointMixin, checkpoint_name, load_checkpoint, plain_results, save_checkpoint,
)
from recbole_streamrec.model.streamrec import trace_statistics
from recbole_streamrec.trainer.grpo import GRPOConfig, grpo_loss_on_rollouts, make_rollouts
from recbole_streamrec.trainer.progress import Progress, progress_interval
from recbole_streamrec.trainer.recipe import Recipe, RecipeMixin

STAGE_LABEL = {"pretrain": "PT", "sft": "SFT", "rl": "RL"}
STAGE_PREFIX = {"pretrain": "pt", "sft": "sft", "rl": "rl"}  # prefix of each stage's config keys
# names of the loss parts each stage's loss returns, for the per-epoch log line
LOSS_PARTS = {"pretrain": ("lengthened", "direct"), "sft": ("sft", "dpo", "quant", "state"), "rl": ("grpo",)}


def is_policy_self_attention(name: str) -> bool:
    """Whether parameter ``name`` is in the policy decoder's self-attention (what reads the reasoning tokens
    before the item; ``sft_attention_learning_rate``), not the direct decoder's."""
    return ".SelfAttention." in name and (name.startswith("t5.decoder.") or ".t5.decoder." in name)


def own_rates(attention_lr: Optional[float], gate_lr: Optional[float]) -> Optional[Callable[[str], Optional[float]]]:
    """``lr_of`` of SFT's optimiser (:func:`~recbole_streamrec.trainer.recipe.decay_groups`): the policy decoder's
    self-attention at ``sft_attention_learning_rate``, ``trace_gate`` at ``trace_gate_learning_rate`` (``None``:
    the stage's rate)."""
    if attention_lr is None and gate_lr is None:
        return None

    def lr_of(name: str) -> Optional[float]:
        if name == "trace_gate" or name.endswith(".trace_gate"):
            return gate_lr
        return attention_lr if is_policy_self_attention(name) else None

    return lr_of


class STREAMRecTrainer(RecipeMixin, SafeCheckpointMixin, Trainer):
    """Runs the configured ``stages``; ``fit`` dispatches on each (as RecBole's S3Rec does on ``train_stage``)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.stages = list(config["stages"])
        self.stage_results: dict[str, dict] = {}
        self.stage_seconds: dict[str, float] = {}  # training seconds of each stage (its training clock)
        self.test_data = None  # set by quick_start.run so every stage is also tested
        self.resume = False
        self.grpo = GRPOConfig.from_config(config)
        # until fit runs, "the best model" is the last configured stage's (e.g. for evaluate-only runs)
        self.stage = self.stages[-1]
        self.model.set_stage(self.stage)
        self.saved_model_file = checkpoint_name(config, f"-{self.stage}")

    # ---- stage bookkeeping --------------------------------------------------------------------------
    def _begin_stage(self, stage: str) -> None:
        cfg = self.config
        self.stage = stage
        self.model.set_stage(stage)
        self.saved_model_file = checkpoint_name(cfg, f"-{stage}")
        self.last_checkpoint_file = checkpoint_name(cfg, f"-{stage}-last")
        self.epochs = {"pretrain": cfg["pt_epochs"], "sft": cfg["sft_epochs_per_round"], "rl": cfg["rl_epochs"]}[stage]
        lr = {"pretrain": cfg["pt_learning_rate"], "sft": cfg["sft_learning_rate"], "rl": cfg["rl_learning_rate"]}[stage]
        self.eval_step = min(cfg["eval_step"], self.epochs)
        self.start_epoch, self.cur_step = 0, 0
        self.best_valid_score, self.best_valid_result = float("-inf"), None
        self.trained_seconds = 0.0  # each stage has its own training clock (and time budget, <stage>_time_budget)
        self.recipe = Recipe.from_config(cfg, STAGE_PREFIX[stage])  # this stage's warm-up, decay, weight decay, budget
        attention_lr = cfg["sft_attention_learning_rate"] if stage == "sft" else None
        gate_lr = cfg["trace_gate_learning_rate"] if stage == "sft" and self.model.trace_gate is not None else None
        self.optimizer = self._build_optimizer(params=self.model.parameters(), learning_rate=lr,
                                               lr_of=own_rates(attention_lr, gate_lr))
        self.log_recipe(f" ({stage})")
        reads = "" if attention_lr is None else f" (the policy decoder's self-attention: {attention_lr})"
        if gate_lr is not None:
            reads += f" (trace gate: {gate_lr}, now {self._gate_summary()})"
        self.logger.info(set_color(f"STREAM-Rec stage {stage}", "green") + f": lr {lr}{reads}, up to {self.epochs} epochs")

    def _reference_file(self) -> str:
        return self.config["reference_checkpoint"] or checkpoint_name(self.config, "-pi_ref")

    def _save_reference(self) -> None:
        """Write the current model as π_ref (the end of stage 1, or a trained TIGER standing in for it)."""
        save_checkpoint({"model": self.config["model"], "state_dict": self.model.state_dict()}, self._reference_file())

    def _load_reference(self, stage: str) -> None:
        """π_ref = frozen (encoder, direct decoder) saved at the end of stage 1.

        SFT without DPO (``dpo_weight: 0``) uses no π_ref, so ``stages: [sft]`` may then start from scratch (no
        ``init_checkpoint``, no stage 1); any other stage without the file gets ``load_checkpoint``'s one-line error.
        """
        self.model.set_reference(None)  # never copy an older reference along
        path = self._reference_file()
        if stage == "sft" and self.config["dpo_weight"] == 0 and not os.path.isfile(path):
            self.logger.info(f"no π_ref ({path}): SFT without DPO needs none")
            return
        reference = copy.deepcopy(self.model)
        reference.load_state_dict(load_checkpoint(path, self.device)["state_dict"])
        self.model.set_reference(reference)

    def _frozen_policy(self):
        """A frozen copy of the current policy (the KL anchor of GRPO), without a copy of π_ref inside."""
        reference = self.model._reference
        self.model.set_reference(None)
        frozen = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.model.set_reference(reference)
        return frozen

    def _finish_stage(self, stage: str, valid_data) -> None:
        """Load the stage's best model, test it, and write the hand-over checkpoint.

        The best model's validation result is the one the fit recorded when it saved that model (RecBole writes
        the checkpoint and ``best_valid_result`` together), so validation runs again only when the fit recorded
        none (e.g. ``eval_step: 0``): an evaluation of a STREAM-Rec model costs minutes on a CPU.
        """
        valid = None
        if os.path.isfile(self.saved_model_file):
            self.model.load_state_dict(load_checkpoint(self.saved_model_file, self.device)["state_dict"])
            valid = self.best_valid_result
        self.stage_seconds[stage] = self.trained_seconds
        self.logger.info(f"stage {stage}: {self.trained_seconds:.0f}s of training")
        if valid is None:
            valid = self.evaluate(valid_data, load_best_model=False)
        results = {"valid": plain_results(valid)}
        if self.test_data is not None:
            results["test"] = plain_results(self.evaluate(self.test_data, load_best_model=False))
        self.stage_results[stage] = results
        self.best_valid_result = results["valid"]
        self.best_valid_score = results["valid"][self.valid_metric]
        state = {**self._checkpoint_state(-1), "stage": stage, "complete": True, "results": results}
        save_checkpoint(state, self.saved_model_file)
        if stage == "pretrain":
            self._save_reference()
        self.logger.info(set_color(f"stage {stage} done", "green") + f": {results}")

    def resume_checkpoint(self, resume_file):
        """Resume the stage list: finished stages are loaded, the interrupted one continues (``--resume``)."""
        self.resume = True

    def _resume_stage(self, stage: str) -> bool:
        """Returns True when the stage already finished (its results are restored)."""
        if not self.resume:
            return False
        if os.path.isfile(self.saved_model_file):
            done = load_checkpoint(self.saved_model_file, self.device)
            if done.get("complete"):
                self.model.load_state_dict(done["state_dict"])
                self.stage_results[stage] = done["results"]
                self.best_valid_result = done["results"]["valid"]
                self.best_valid_score = done["results"]["valid"][self.valid_metric]
                self.logger.info(f"stage {stage} already finished: loaded {self.saved_model_file}")
                return True
        if os.path.isfile(self.last_checkpoint_file):
            super().resume_checkpoint(self.last_checkpoint_file)
        return False

    # ---- fit ----------------------------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if valid_data is None:
            raise ValueError("STREAM-Rec needs valid_data: every stage selects its model on validation")
        if self.config["init_checkpoint"]:
            source = self.load_initial_weights(self.config["init_checkpoint"])
            if source == "TIGER" and "pretrain" not in self.stages and not self.config["reference_checkpoint"]:
                self._save_reference()  # the trained TIGER is stage 1: its encoder + decoder are π_ref
        for stage in self.stages:
            self._begin_stage(stage)
            if stage != "pretrain":
                self._load_reference(stage)
            if stage == "sft":
                self._hand_over_to_sft(valid_data)  # a resumed stage then loads its own weights over it
            if self._resume_stage(stage):
                continue
            if stage == "sft":
                self._fit_sft(train_data, valid_data, verbose, show_progress)
            else:
                if stage == "rl":
                    self.kl_reference = self._frozen_policy()
                super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
            self._finish_stage(stage, valid_data)
        self.logger.info("\n" + self.results_table())
        return self.best_valid_score, self.best_valid_result

    def _fit_sft(self, train_data, valid_data, verbose: bool, show_progress: bool) -> None:
        """Stage 2: annotate → train ``sft_epochs_per_round`` epochs → repeat while validation improves."""
        cfg, patience, stale = self.config, self.config["sft_round_patience"], 0
        for round_idx in range(cfg["sft_rounds"]):
            if round_idx and self.budget_spent():  # sft_time_budget covers all rounds, annotations included
                break
            before = self.best_valid_score
            # the training clock counts the annotation a learned trace is made of; a constant trace replaces it,
            # so there the annotation (kept for its statistics) is not training time
            with self.clocked() if self.model.reasoning_trace != "constant" else nullcontext():
                self._annotate(train_data)
            self.start_epoch, self.cur_step = 0, 0
            super().fit(train_data, valid_data, verbose, True, show_progress)
            improved = self.best_valid_score > before
            self.logger.info(f"SFT round {round_idx + 1}: best valid {self.valid_metric} {self.best_valid_score:.4f}"
                             + ("" if improved else " (no improvement)"))
            stale = 0 if improved else stale + 1
            if stale >= patience:
                break
            # the next round annotates with the best model so far
            self.model.load_state_dict(load_checkpoint(self.saved_model_file, self.device)["state_dict"])

    def _hand_over_to_sft(self, valid_data) -> None:
        """Log the stage-1 direct decoder's validation score (as TIGER), then apply ``sft_init_decoder``."""
        model = self.model
        model.direct_inference = True
        try:
            direct = plain_results(self.evaluate(valid_data, load_best_model=False))
        finally:
            model.direct_inference = False
        self.direct_valid_result = direct  # the SFT stage should reach at least this (issue 12, point 2)
        self.logger.info(set_color("stage-1 direct decoder (as TIGER)", "green")
                         + f": valid {self.valid_metric} {direct.get(self.valid_metric, float('nan')):.4f}")
        if (self.config["sft_init_decoder"] or "direct") == "direct":
            model.init_reasoning_from_direct()
        if model.reasoning_trace == "collaborative" and (self.config["trace_token_init"] or "random") == "members":
            model.init_trace_tokens()

    @torch.no_grad()
    def _annotate(self, train_data) -> None:
        """Write reasoning tokens for every training row into the dataset (field ``reasoning_tokens``).

        Rows go through in order of history length (each chunk holds similar lengths, so the encoder's
        padding is short) and are written back in their own order. Logs :func:`trace_statistics`. Under DDP each
        rank annotates every N-th chunk and the ranks' results are summed (each row is written by one rank, zeros
        elsewhere), so every rank holds the same annotated dataset.
        """
        from recbole.data.interaction import Interaction

        dataset, model = train_data._dataset, self.model
        feat, batch, start_time = dataset.inter_feat, self.config["eval_batch_size"], time()
        n, l = len(feat), model.n_reasoning
        if l == 0:  # no trace: nothing to annotate (and no training time spent on it)
            feat.update(Interaction({model.REASONING_FIELD: torch.zeros(n, 0, dtype=torch.long)}))
            self.logger.info(f"no reasoning tokens (reasoning_steps 0): {n} training rows, nothing to annotate")
            return
        model.eval()
        tokens = torch.zeros(n, l, dtype=torch.long)
        distances = torch.zeros(n, l + 1)
        order = torch.argsort(feat[model.ITEM_SEQ_LEN], stable=True)  # [n], shortest history first
        starts = range(rank() * batch, n, world_size() * batch)
        progress = Progress("annotation", len(starts), progress_interval(self.config), unit="chunks")
        for start in starts:
            rows = order[start : start + batch]
            chunk, dist = model.annotate(feat[rows].to(self.device), return_distances=True)
            tokens[rows], distances[rows] = chunk.cpu(), dist.float().cpu()
            progress.tick(1, len(rows))
        tokens, distances = sum_across_ranks(tokens, self.device), sum_across_ranks(distances, self.device)
        stats = trace_statistics(tokens, model.target_tokens(feat[model.POS_ITEM_ID].to(self.device)).cpu(),
                                 distances)
        constant = model.reasoning_trace == "constant"
        if constant:
            tokens = model.constant_trace(n, tokens.device)
        feat.update(Interaction({model.REASONING_FIELD: tokens}))
        self.annotation_stats = stats
        replaced = "; the statistics are the annotation's, which it replaces" if constant else ""
        self.logger.info(f"annotated {n} training rows with {l} reasoning tokens in {time() - start_time:.1f}s"
                         f" ({model.reasoning_trace} trace{replaced}); annotation: "
                         + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))

    def optimizer_steps_per_epoch(self, train_data) -> int:
        if self.stage != "rl":
            return len(train_data)
        return min(len(train_data), self.grpo.steps_per_epoch) * getattr(self.grpo, "iterations", 1)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.stage != "rl":
            return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        with self.clocked():
            loss = self._grpo_epoch(train_data, epoch_idx)
        self.validate_if_spent()
        return loss

    def _grpo_epoch(self, train_data, epoch_idx: int) -> float:
        """One GRPO epoch: ``rl_steps_per_epoch`` rollout batches, ``rl_iterations`` passes each."""
        self.start_progress(train_data, epoch_idx)
        self._save_resume_point(epoch_idx)
        total, stats_sum, steps, passes = 0.0, {}, 0, 0
        cap = math.ceil(self.grpo.batch_size / world_size())  # rl_batch_size users per step over all ranks
        sampler = getattr(train_data, "bucket_sampler", None)
        for batch in self.until_spent(train_data):
            if steps >= self.grpo.steps_per_epoch:
                break
            batch = batch[:cap].to(self.device)
            weight = shard_weight(sampler.shard_sizes, rank(), cap) if self.distributed and sampler else 1.0
            with torch.autocast(device_type=self.device.type, enabled=self.enable_amp):
                rollouts = make_rollouts(self.model, self.kl_reference, batch, self.grpo)
            for _ in range(self.grpo.iterations):  # old log-probs fixed: the ratio and the clip act from pass 2
                self.optimizer.zero_grad()
                if self.distributed:  # RecBole's reduce hook: the backward averages the ranks' gradients
                    self.set_reduce_hook()
                with torch.autocast(device_type=self.device.type, enabled=self.enable_amp):
                    loss, stats = grpo_loss_on_rollouts(self.model, batch, rollouts, self.grpo)
                if self.distributed:  # this rank's rollouts weighted by their share of the step's users
                    (loss * weight + self.sync_grad_loss()).backward()
                else:
                    loss.backward()
                if self.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
                self.optimizer.step()
                total, passes = total + loss.item(), passes + 1
                for k, v in stats.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + v / self.grpo.iterations
            steps += 1
            for k, v in rollouts.stats.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + v
        self.logger.info(f"GRPO epoch {epoch_idx} ({steps} rollout batches × {self.grpo.iterations} passes): "
                         + ", ".join(f"{k} {v / max(steps, 1):.4f}" for k, v in stats_sum.items()))
        return total / max(passes, 1)

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        """RecBole's epoch line, with each loss part named (``sft 1.23, dpo 0.07, …``)."""
        parts = losses if isinstance(losses, tuple) else (losses,)
        named = ", ".join(f"{name} {value:.4f}" for name, value in zip(LOSS_PARTS[self.stage], parts))
        if self.stage != "pretrain" and self.model.trace_gate is not None:
            named += f", trace gate {self._gate_summary()}"
        return f"[{self.stage}] epoch {epoch_idx} training [time: {e_time - s_time:.2f}s, {named}]"

    def _gate_summary(self) -> str:
        """``trace_gate`` per head, min/mean/max (how far the item's view of the trace has opened)."""
        gate = self.model.trace_gate.detach().float()
        return f"min {gate.min():.2f} / mean {gate.mean():.2f} / max {gate.max():.2f}"

    def results_table(self) -> str:
        """The PT / SFT / RL table: Recall and NDCG at 5 and 10, valid and test."""
        metrics = ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]
        head = "| stage | split | " + " | ".join(metrics) + " |"
        lines = [head, "|" + "---|" * (len(metrics) + 2)]
        for stage, results in self.stage_results.items():
            for split, values in results.items():
                row = " | ".join(f"{values.get(m, float('nan')):.4f}" for m in metrics)
                lines.append(f"| {STAGE_LABEL.get(stage, stage)} | {split} | {row} |")
        return "\n".join(lines)
