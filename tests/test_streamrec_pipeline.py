"""STREAM-Rec end to end on the tiny dataset: the chained pretrain → SFT → RL run, single stages, resuming,
and each stage's objective improving when trained directly (SPEC §5).

The chained run uses the smallest schedule (one epoch per stage, one SFT round, two GRPO steps): it checks
the hand-over through files, not the quality of the result. Learning is checked separately, on the
model's own loss functions with an optimiser, where a few dozen steps are cheap and deterministic.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_streamrec.config import Config
from recbole_streamrec.errors import MissingFileError
from recbole_streamrec.model.streamrec import STREAMRec
from recbole_streamrec.quick_start import load_data, run
from recbole_streamrec.trainer import STREAMRecTrainer
from recbole_streamrec.trainer.grpo import GRPOConfig, grpo_loss_on_batch, rollout_rewards

from conftest import DATASET, overrides
from test_streamrec import STREAM_KEYS, make_stream, with_reasoning  # noqa: F401  (make_stream is a fixture)

METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
STAGES = ("pretrain", "sft", "rl")


def checkpoint(config: dict[str, Any], tag: str, suffix: str) -> Path:
    return Path(config["checkpoint_dir"]) / f"STREAMRec-{DATASET}-{tag}-{suffix}.pth"


CHAINED_EVALUATIONS: list[str] = []  # "valid" or "test", one per evaluation the chained run made, in order


@pytest.fixture(scope="module")
def chained(tiny_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config_dict, result)`` of one default-schedule run (tag ``chain``); its evaluations are counted."""
    config = overrides(tiny_root, "STREAMRec", **STREAM_KEYS, checkpoint_tag="chain")
    evaluate = STREAMRecTrainer.evaluate

    def counted(self, eval_data, *args, **kwargs):
        CHAINED_EVALUATIONS.append("test" if eval_data is self.test_data else "valid")
        return evaluate(self, eval_data, *args, **kwargs)

    CHAINED_EVALUATIONS.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [sys.argv[0]])
        mp.chdir(tiny_root)
        mp.setattr(STREAMRecTrainer, "evaluate", counted)
        return config, run("STREAMRec", DATASET, config_dict=config)


def assert_metrics(results: dict[str, float]) -> None:
    assert set(METRICS) <= set(results), results
    assert all(math.isfinite(results[m]) and 0.0 <= results[m] <= 1.0 for m in METRICS), results


# ---- the chained run ---------------------------------------------------------------------------------
def test_chained_run_hands_over_through_weights_only_checkpoints(chained) -> None:
    config, result = chained
    stages = result["stage_results"]
    assert list(stages) == list(STAGES)
    for stage in STAGES:
        assert set(stages[stage]) == {"valid", "test"}
        assert_metrics(stages[stage]["valid"])
        assert_metrics(stages[stage]["test"])
    assert result["best_valid_score"] == pytest.approx(stages["rl"]["valid"]["ndcg@10"])
    assert {k: float(v) for k, v in dict(result["test_result"]).items()} == pytest.approx(stages["rl"]["test"])

    saved = {s: torch.load(checkpoint(config, "chain", s), weights_only=True) for s in (*STAGES, "pi_ref")}
    for stage in STAGES:
        assert saved[stage]["stage"] == stage and saved[stage]["complete"] is True
        assert saved[stage]["results"] == stages[stage]
    states = {s: saved[s]["state_dict"] for s in saved}
    assert all(states[s].keys() == states["pi_ref"].keys() for s in STAGES)
    assert any(k.startswith("direct_decoder.") for k in states["pi_ref"]), "π_ref needs the direct decoder"
    # π_ref is the finished stage-1 model; the later stages trained on from it
    assert all(torch.equal(states["pi_ref"][k], states["pretrain"][k]) for k in states["pi_ref"])
    assert any(not torch.equal(states["sft"][k], states["pretrain"][k]) for k in states["sft"])


def test_each_model_is_evaluated_once_and_the_reused_results_are_the_saved_models(chained, workdir) -> None:
    """A stage reports the validation its fit made of the best model (not a second one), and the run reports
    the last stage's test (not a third one); both are what the saved model scores."""
    config, result = chained
    # one epoch a stage: pretrain validates and tests; SFT scores the direct decoder, validates and tests; RL
    # validates and tests. Nothing after that.
    assert CHAINED_EVALUATIONS == ["valid", "test", "valid", "valid", "test", "valid", "test"]
    trainer, _, valid = resumed_trainer(config)
    trainer.model.set_stage("sft")
    trainer.model.load_state_dict(torch.load(checkpoint(config, "chain", "sft"), weights_only=True)["state_dict"])
    again = {k: float(v) for k, v in trainer.evaluate(valid, load_best_model=False).items()}
    assert again == pytest.approx(result["stage_results"]["sft"]["valid"])


def test_a_single_rl_stage_starts_from_the_given_checkpoints(chained, run_overrides) -> None:
    """``stages: [rl]`` with ``init_checkpoint`` (the SFT model) and ``reference_checkpoint`` (π_ref)."""
    chain_config, _ = chained
    sft, pi_ref = checkpoint(chain_config, "chain", "sft"), checkpoint(chain_config, "chain", "pi_ref")
    config = run_overrides("STREAMRec", **{**STREAM_KEYS, "stages": ["rl"], "checkpoint_tag": "single",
                                           "init_checkpoint": str(sft), "reference_checkpoint": str(pi_ref)})
    result = run("STREAMRec", DATASET, config_dict=config)
    assert list(result["stage_results"]) == ["rl"]
    assert_metrics(result["stage_results"]["rl"]["test"])
    for suffix in ("pretrain", "sft", "pi_ref"):
        assert not checkpoint(config, "single", suffix).exists(), f"a single RL stage wrote -{suffix}"
    after = torch.load(checkpoint(config, "single", "rl"), weights_only=True)["state_dict"]
    before = torch.load(sft, weights_only=True)["state_dict"]
    # two GRPO steps at lr 1e-5 from the SFT weights: close to them, but moved (a fresh model is O(1) away)
    gap = max((after[k].float() - before[k].float()).abs().max().item() for k in before)
    assert 0 < gap < 1e-3


def test_the_pure_rl_schedule(run_overrides) -> None:
    config = run_overrides("STREAMRec", **{**STREAM_KEYS, "stages": ["pretrain", "rl"], "checkpoint_tag": "purerl"})
    result = run("STREAMRec", DATASET, config_dict=config)
    assert list(result["stage_results"]) == ["pretrain", "rl"]
    assert_metrics(result["stage_results"]["rl"]["test"])
    for suffix in ("pretrain", "rl", "pi_ref"):
        assert checkpoint(config, "purerl", suffix).is_file()
    assert not checkpoint(config, "purerl", "sft").exists()


def test_sft_without_dpo_starts_from_scratch_and_without_it_names_the_missing_reference(run_overrides) -> None:
    """``stages: [sft]`` with no stage 1: fine when DPO is off (no π_ref used), a one-line error naming π_ref else."""
    config = run_overrides("STREAMRec", **{**STREAM_KEYS, "stages": ["sft"], "dpo_weight": 0.0,
                                           "checkpoint_tag": "scratch"})
    result = run("STREAMRec", DATASET, config_dict=config)
    assert list(result["stage_results"]) == ["sft"]
    assert_metrics(result["stage_results"]["sft"]["test"])
    assert checkpoint(config, "scratch", "sft").is_file()
    assert not checkpoint(config, "scratch", "pi_ref").exists()

    config = run_overrides("STREAMRec", **{**STREAM_KEYS, "stages": ["sft"], "checkpoint_tag": "scratch-dpo"})
    with pytest.raises(MissingFileError, match="checkpoint not found: .*-scratch-dpo-pi_ref.pth"):
        run("STREAMRec", DATASET, config_dict=config)


def test_sft_loss_without_dpo_is_the_same_sft_loss_and_needs_no_reference(make_stream, tiny_batch) -> None:
    model, _ = make_stream(dpo_weight=0.0)
    model.set_reference(None)
    batch = with_reasoning(model, tiny_batch)
    sft, dpo, _, _ = model.sft_loss(batch)
    assert dpo.item() == 0.0 and sft.item() > 0.0


# ---- resuming ----------------------------------------------------------------------------------------
def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any stage that trains again fails the test (RecBole's ``fit`` runs every stage's epochs)."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(Trainer, "fit", refuse)
    monkeypatch.setattr(STREAMRecTrainer, "_annotate", refuse)


def resumed_trainer(config_dict: dict[str, Any]) -> tuple[STREAMRecTrainer, Any, Any]:
    """What ``quick_start.run`` builds, resumed: ``(trainer, train_data, valid_data)``."""
    config = Config(model="STREAMRec", dataset=DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    _, train, valid, test = load_data(config)
    trainer = STREAMRecTrainer(config, STREAMRec(config, train._dataset))
    trainer.test_data = test
    trainer.resume_checkpoint(trainer.last_checkpoint_file)
    return trainer, train, valid


def test_trainer_resume_skips_finished_stages_and_restores_their_results(chained, workdir, monkeypatch) -> None:
    config, result = chained
    trainer, train, valid = resumed_trainer(config)
    forbid_training(monkeypatch)
    trainer.fit(train, valid)
    assert trainer.stage_results == result["stage_results"]
    rl = torch.load(checkpoint(config, "chain", "rl"), weights_only=True)["state_dict"]
    assert all(torch.equal(v, rl[k]) for k, v in trainer.model.state_dict().items())


def test_trainer_resume_returns_the_last_stages_validation(chained, workdir, monkeypatch) -> None:
    config, result = chained
    trainer, train, valid = resumed_trainer(config)
    forbid_training(monkeypatch)
    score, valid_result = trainer.fit(train, valid)
    assert score == pytest.approx(result["best_valid_score"])
    assert valid_result == result["stage_results"]["rl"]["valid"]


def test_run_with_resume_skips_finished_stages(chained, monkeypatch) -> None:
    config, result = chained
    forbid_training(monkeypatch)
    resumed = run("STREAMRec", DATASET, config_dict=config, resume=True)
    assert resumed["stage_results"] == result["stage_results"]
    assert {k: float(v) for k, v in dict(resumed["test_result"]).items()} == pytest.approx(
        result["stage_results"]["rl"]["test"])


# ---- each stage's objective improves when trained ----------------------------------------------------
def first_and_last(losses: list[float], n: int = 4) -> tuple[float, float]:
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def test_pretraining_loss_falls(make_stream, tiny_data) -> None:
    """Lengthened-target loss + direct-decoder loss, 4 epochs at the stage-1 learning rate (1e-3)."""
    model, config = make_stream()
    model.train()
    feat = tiny_data[2]._dataset.inter_feat
    optimizer = torch.optim.Adam(model.parameters(), lr=config["pt_learning_rate"])
    gen, losses = torch.Generator().manual_seed(0), []
    for _ in range(4):
        order = torch.randperm(len(feat), generator=gen)
        for start in range(0, len(feat), 64):
            optimizer.zero_grad()
            lengthened, direct = model.pretrain_loss(feat[order[start : start + 64]])
            (lengthened + direct).backward()
            optimizer.step()
            losses.append((lengthened + direct).item())
    first, last = first_and_last(losses)
    assert last < 0.8 * first, (first, last)


def test_sft_loss_falls(make_stream, tiny_data) -> None:
    """``L_SFT + λL_DPO + μL_Quant + δL_State`` on one annotation of the training set (π_ref = the starting
    model), 3 epochs at the stage-2 learning rate (1e-3)."""
    model, config = make_stream()
    model.set_reference(copy.deepcopy(model))
    model.set_stage("sft")
    annotated = with_reasoning(model, tiny_data[2]._dataset.inter_feat)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["sft_learning_rate"])
    gen, losses = torch.Generator().manual_seed(0), []
    torch.manual_seed(0)  # the DPO negatives
    for _ in range(3):
        order = torch.randperm(len(annotated), generator=gen)
        for start in range(0, len(annotated), 64):
            optimizer.zero_grad()
            loss = sum(model.sft_loss(annotated[order[start : start + 64]]))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    first, last = first_and_last(losses)
    assert last < 0.8 * first, (first, last)


@torch.no_grad()
def mean_reward_and_target_logp(model: STREAMRec, rows, cfg: GRPOConfig) -> tuple[float, float]:
    """Mean total reward of G rollouts per row, and mean log π_θ(codes(target) | x, sampled think)."""
    torch.manual_seed(123)
    tokens, _, rewards = rollout_rewards(model, rows, cfg)
    enc, mask = model.encode(rows)
    g = cfg.group
    logp = model.item_logp(model.t5.decoder, tokens[:, : model.n_reasoning],
                           rows[model.POS_ITEM_ID].repeat_interleave(g), enc.repeat_interleave(g, 0),
                           mask.repeat_interleave(g, 0))
    return rewards["total"].mean().item(), logp.mean().item()


def test_grpo_raises_the_reward_and_the_targets_likelihood(make_stream, tiny_data) -> None:
    """20 GRPO steps (16 users × G = 4, lr 1e-3, default reward weights) from an untrained model.

    What reliably moves: the thinking-likelihood reward ``log π_θ(target | x, think) − log π_ref(target | x)``
    is continuous and differs between the G rollouts (each has its own think prefix), so it dominates the
    group-relative advantages; the update raises the likelihood of prefixes under which the target is
    likely, and with it the mean total reward and the target's log-probability. (Format and exact-match
    rewards alone are too sparse for an untrained model in 20 steps.) Measured on 128 fixed training rows,
    with the same sampling seed before and after.
    """
    model, config = make_stream(rl_group_size=4)
    model.set_stage("rl")
    model.set_reference(copy.deepcopy(model))
    anchor = copy.deepcopy(model)
    anchor.set_reference(None)
    anchor.requires_grad_(False)
    cfg = GRPOConfig.from_config(config)
    feat = tiny_data[2]._dataset.inter_feat
    gen = torch.Generator().manual_seed(0)
    rows = feat[torch.randperm(len(feat), generator=gen)[:128]]
    reward_before, logp_before = mean_reward_and_target_logp(model, rows, cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    for _ in range(20):
        loss, _ = grpo_loss_on_batch(model, anchor, feat[torch.randperm(len(feat), generator=gen)[:16]], cfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    reward_after, logp_after = mean_reward_and_target_logp(model, rows, cfg)
    assert reward_after > reward_before + 0.1, (reward_before, reward_after)
    assert logp_after > logp_before + 0.1, (logp_before, logp_after)


def test_stage_time_budgets_cut_each_stage_and_are_reported(run_overrides, monkeypatch) -> None:
    """Each stage stops at its first validation past its budget; ``sft_time_budget`` covers all SFT rounds."""
    epochs: list[str] = []
    annotate, train_epoch = STREAMRecTrainer._annotate, STREAMRecTrainer._train_epoch

    def counted_annotate(self, *args, **kwargs):
        epochs.append("annotate")
        return annotate(self, *args, **kwargs)

    def counted_epoch(self, *args, **kwargs):
        epochs.append(self.stage)
        return train_epoch(self, *args, **kwargs)

    monkeypatch.setattr(STREAMRecTrainer, "_annotate", counted_annotate)
    monkeypatch.setattr(STREAMRecTrainer, "_train_epoch", counted_epoch)
    config = run_overrides("STREAMRec", **{**STREAM_KEYS, "stages": ["pretrain", "sft"], "pt_epochs": 3,
                                           "sft_rounds": 3, "sft_round_patience": 3, "sft_epochs_per_round": 2,
                                           "pt_time_budget": 1e-6, "sft_time_budget": 1e-6, "checkpoint_tag": "budget"})
    result = run("STREAMRec", DATASET, config_dict=config)
    assert epochs == ["pretrain", "annotate", "sft"], "one epoch a stage, one SFT round: both budgets are spent"
    seconds = result["stage_training_seconds"]
    assert list(seconds) == ["pretrain", "sft"] and all(v > 0 for v in seconds.values())
    assert result["training_seconds"] == pytest.approx(sum(seconds.values()), abs=0.01)
