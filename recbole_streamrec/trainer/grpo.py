"""Stage 3 of STREAM-Rec: GRPO with five rewards (SPEC §5, paper §2.4), readable in a few functions.

Per batch of users: G rollouts each (l reasoning tokens, then m item tokens) from the policy, five
rewards (pure functions in :mod:`recbole_streamrec.model.rewards`), weighted and summed, group-relative
advantages, then ``rl_iterations`` optimisation passes of the clipped surrogate with a k3 KL penalty to a
frozen copy of the policy that entered this stage (the stage-2 model in the default schedule).

SPEC §5b choices:

* **Item decoding** (``rl_item_decoding``): ``level`` (default) draws item token d among level d's K codes,
  so a rollout can be a real item and the format reward varies; ``free`` draws from all of ℂ (almost never
  an item); ``trie`` only real items (the format reward is then always 0).
* **Rollouts** (``rl_rollout``): ``sample`` (default, the paper) draws the G rollouts from the policy as
  above; ``beam`` takes the G most likely (trace, item) pairs of joint decoding's search, a trace beam then
  one trie-constrained item beam over all (trace, item) continuations (:meth:`STREAMRec.beam_rollout`), so a
  group is the policy's own top of the list and the advantage pushes the target up and the wrong items ranked
  above it down, which is what NDCG@10 measures (not in the paper; ranked rollouts as in MiniOneRec's GRPO).
  ``rl_item_decoding`` is then moot (always real items).
* **Iterations** (``rl_iterations``): the old log-probabilities are those of the rollout policy, computed
  once per rollout batch and fixed; pass 1 has ratio exactly 1, later passes see the ratio move and the
  clip act (TRL's ``num_iterations``).
* **Advantage** (``rl_advantage``): ``total`` (default, the paper) normalises the weighted reward sum within
  each user's group; ``per_reward`` normalises each reward within the group first and sums the weighted
  z-scores, so a reward with a large within-group spread (thinking likelihood: std ≈ 4 against exact match's
  ≈ 0.08 on ml-100k) cannot drown the others (not in the paper; ``docs/results/grpo-ml-100k-quick/``).
* **Credit** (``rl_credit``): ``rollout`` (default, the paper) gives every token of a rollout its one
  advantage; ``split`` gives the reasoning tokens the advantage of the rewards about the trace (thinking
  likelihood, thinking ranking, similarity) and the item tokens that of the rewards about the item (format,
  exact match, similarity), so a sampled wrong item is not pushed up because its trace made the target likely
  (not in the paper).
* **Dropout**: the rollout, the old log-probabilities, the KL anchor and every optimisation pass all run
  with the model in eval mode (dropout off), so the ratio compares the very distribution that sampled the
  rollouts; gradients flow in eval mode as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recbole_streamrec.model.rewards import (
    REWARD_NAMES, combine_rewards, exact_match_reward, format_reward, group_advantages, grpo_loss,
    per_reward_advantages, reward_statistics, similarity_reward, thinking_likelihood_reward, thinking_ranking_reward,
)
from recbole_streamrec.model.streamrec_decoding import ITEM_DECODINGS
from recbole_streamrec.tokenizer.codes import tokens_to_codes

TRACE_REWARDS = ("thinking_likelihood", "thinking_ranking", "similarity")  # rl_credit: split
ITEM_REWARDS = ("format", "exact_match", "similarity")


@dataclass(frozen=True)
class GRPOConfig:
    group: int
    batch_size: int
    steps_per_epoch: int
    temperature: float
    item_decoding: str
    hard_negatives: int
    clip_eps: float
    kl_beta: float
    weights: dict
    iterations: int = 1
    advantage: str = "total"
    credit: str = "rollout"
    rollout: str = "sample"

    @classmethod
    def from_config(cls, config) -> "GRPOConfig":
        decoding = config["rl_item_decoding"] or "level"
        if decoding not in ITEM_DECODINGS:
            raise ValueError(f"rl_item_decoding must be one of {ITEM_DECODINGS}, not {decoding!r}")
        return cls(
            group=config["rl_group_size"], batch_size=config["rl_batch_size"],
            steps_per_epoch=config["rl_steps_per_epoch"], temperature=config["rl_temperature"],
            item_decoding=decoding, hard_negatives=config["rl_hard_negatives"],
            clip_eps=config["rl_clip_eps"], kl_beta=config["rl_kl_beta"],
            weights={name: float(config[f"reward_{name}_weight"]) for name in REWARD_NAMES},
            iterations=int(config["rl_iterations"] or 1),
            advantage=config["rl_advantage"] or "total", credit=config["rl_credit"] or "rollout",  # checked at start-up
            rollout=config["rl_rollout"] or "sample",
        )


@dataclass
class Rollouts:
    """One rollout batch, fixed across the ``rl_iterations`` passes (all ``[B·G, …]``)."""

    tokens: Tensor  # [B·G, l+m]
    advantages: Tensor  # [B·G] ([B·G, l+m] with rl_credit: split)
    old_logp: Tensor  # [B·G, l+m] under the policy that sampled them
    ref_logp: Tensor  # [B·G, l+m] under the frozen KL anchor
    stats: dict  # reward_<name> (mean) and reward_<name>_std (within-group std)


@torch.no_grad()
def rollout_rewards(model, batch, cfg: GRPOConfig) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Sample ``G`` rollouts per user and score them → tokens ``[B·G, l+m]``, advantages ``[B·G]`` (``[B·G, l+m]``
    with ``rl_credit: split``), rewards."""
    model.eval()
    items = batch[model.POS_ITEM_ID]  # [B]
    enc, mask = model.encode(batch)
    if cfg.rollout == "beam":
        tokens, mean_state = model.beam_rollout(enc, mask, cfg.group)
    else:
        tokens, mean_state = model.rollout(enc, mask, cfg.group, temperature=cfg.temperature,
                                           item_decoding=cfg.item_decoding)
    think, item_tokens = tokens[:, : model.n_reasoning], tokens[:, model.n_reasoning :]
    target = items.repeat_interleave(cfg.group)  # [B·G]
    pred_codes = tokens_to_codes(item_tokens, codebook_size=model.codebook_size)  # [B·G, m]
    target_codes = model.item_codes[target]
    k = min(cfg.hard_negatives, model.neighbours.shape[1])
    candidates = torch.cat([target.unsqueeze(1), model.neighbours[target, :k]], dim=1)  # [B·G, 1+K]
    cand_logp = model.candidate_logp(enc, mask, think, candidates)
    ref_logp = model.reference_logp(batch, items)[0].repeat_interleave(cfg.group)
    rewards = {
        "format": format_reward(model.trie.lookup(pred_codes) > 0),
        "exact_match": exact_match_reward(pred_codes, target_codes),
        "similarity": similarity_reward(mean_state.float(), model.target_repr(target).float()),
        "thinking_likelihood": thinking_likelihood_reward(cand_logp[:, 0], ref_logp),
        "thinking_ranking": thinking_ranking_reward(cand_logp[:, 0], cand_logp[:, 1:]),
    }
    total = combine_rewards(rewards, cfg.weights)  # [B·G]
    if cfg.credit == "split":  # [B·G, l+m]: trace tokens get the trace rewards' advantage, item tokens the item's
        trace = _advantages({k: rewards[k] for k in TRACE_REWARDS}, cfg)
        item = _advantages({k: rewards[k] for k in ITEM_REWARDS}, cfg)
        advantages = torch.cat([trace.unsqueeze(1).expand(-1, think.shape[1]),
                                item.unsqueeze(1).expand(-1, item_tokens.shape[1])], dim=1)
    else:
        advantages = _advantages(rewards, cfg)
    return tokens, advantages, {**rewards, "total": total}


def _advantages(rewards: dict[str, Tensor], cfg: GRPOConfig) -> Tensor:
    """``[B·G]`` group-relative advantages of ``rewards`` as ``rl_advantage`` says."""
    if cfg.advantage == "per_reward":
        return per_reward_advantages({k: r.view(-1, cfg.group) for k, r in rewards.items()}, cfg.weights).view(-1)
    return group_advantages(combine_rewards(rewards, cfg.weights).view(-1, cfg.group)).view(-1)


def _policy_logp(model, batch, tokens: Tensor, group: int) -> Tensor:
    """Per-token log π(tokens) ``[B·G, l+m]`` by teacher forcing (gradients follow the caller's mode)."""
    enc, mask = model.encode(batch)
    return model.rollout_logp(enc.repeat_interleave(group, 0), mask.repeat_interleave(group, 0), tokens)


@torch.no_grad()
def make_rollouts(model, reference, batch, cfg: GRPOConfig) -> Rollouts:
    """Rollouts, rewards and advantages, plus the old (rollout-policy) and anchor log-probs, all in eval mode."""
    tokens, advantages, rewards = rollout_rewards(model, batch, cfg)
    old_logp = _policy_logp(model, batch, tokens, cfg.group)
    ref_logp = _policy_logp(reference.eval(), batch, tokens, cfg.group)
    stats = {f"reward_{k[:-5]}" if k.endswith("_mean") else f"reward_{k}": v
             for k, v in reward_statistics(rewards, cfg.group).items()}  # reward_<name>, reward_<name>_std
    return Rollouts(tokens, advantages, old_logp, ref_logp, stats)


def grpo_loss_on_rollouts(model, batch, rollouts: Rollouts, cfg: GRPOConfig) -> tuple[Tensor, dict[str, float]]:
    """One optimisation pass: the clipped surrogate + k3 KL on fixed rollouts (model kept in eval mode)."""
    model.eval()
    logp = _policy_logp(model, batch, rollouts.tokens, cfg.group)
    mask = torch.ones_like(logp, dtype=torch.bool)
    return grpo_loss(logp, rollouts.old_logp, rollouts.ref_logp, rollouts.advantages, mask,
                     clip_eps=cfg.clip_eps, kl_beta=cfg.kl_beta)


def grpo_loss_on_batch(model, reference, batch, cfg: GRPOConfig) -> tuple[Tensor, dict[str, float]]:
    """Rollouts and the first pass's objective on ``batch`` (ratio 1); stats include each reward's mean."""
    rollouts = make_rollouts(model, reference, batch, cfg)
    loss, stats = grpo_loss_on_rollouts(model, batch, rollouts, cfg)
    stats.update(rollouts.stats)
    return loss, stats
