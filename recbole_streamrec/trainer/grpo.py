"""Stage 3 of STREAM-Rec: GRPO with five rewards (SPEC §5, paper §2.4), readable in one function.

Per batch of users: G rollouts each (l reasoning tokens, then m item tokens) from the policy, five
rewards (pure functions in :mod:`recbole_streamrec.model.rewards`), weighted and summed, group-relative
advantages, then the clipped surrogate with a k3 KL penalty to a frozen copy of the policy that entered
this stage (the stage-2 model in the default schedule). One update per rollout batch, so the old policy
equals the current one (ratio 1, as in TRL's default ``num_iterations=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recbole_streamrec.model.rewards import (
    REWARD_NAMES, combine_rewards, exact_match_reward, format_reward, group_advantages, grpo_loss,
    similarity_reward, thinking_likelihood_reward, thinking_ranking_reward,
)
from recbole_streamrec.tokenizer.codes import tokens_to_codes


@dataclass(frozen=True)
class GRPOConfig:
    group: int
    batch_size: int
    steps_per_epoch: int
    temperature: float
    constrained: bool
    hard_negatives: int
    clip_eps: float
    kl_beta: float
    weights: dict

    @classmethod
    def from_config(cls, config) -> "GRPOConfig":
        decoding = config["rl_item_decoding"] or "free"
        if decoding not in ("free", "trie"):
            raise ValueError(f"rl_item_decoding must be 'free' or 'trie', not {decoding!r}")
        return cls(
            group=config["rl_group_size"], batch_size=config["rl_batch_size"],
            steps_per_epoch=config["rl_steps_per_epoch"], temperature=config["rl_temperature"],
            constrained=decoding == "trie", hard_negatives=config["rl_hard_negatives"],
            clip_eps=config["rl_clip_eps"], kl_beta=config["rl_kl_beta"],
            weights={name: float(config[f"reward_{name}_weight"]) for name in REWARD_NAMES},
        )


@torch.no_grad()
def rollout_rewards(model, batch, cfg: GRPOConfig) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Sample ``G`` rollouts per user and score them → tokens ``[B·G, l+m]``, advantages ``[B·G]``, rewards."""
    model.eval()
    items = batch[model.POS_ITEM_ID]  # [B]
    enc, mask = model.encode(batch)
    tokens, mean_state = model.rollout(enc, mask, cfg.group, temperature=cfg.temperature,
                                       constrained=cfg.constrained)
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
    advantages = group_advantages(total.view(-1, cfg.group)).view(-1)
    return tokens, advantages, {**rewards, "total": total}


def grpo_loss_on_batch(model, reference, batch, cfg: GRPOConfig) -> tuple[Tensor, dict[str, float]]:
    """One GRPO objective on ``batch``: rollouts and rewards without gradients, then the clipped loss."""
    tokens, advantages, rewards = rollout_rewards(model, batch, cfg)
    with torch.no_grad():
        ref_enc, ref_mask = reference.encode(batch)
        ref_logp = reference.rollout_logp(ref_enc.repeat_interleave(cfg.group, 0),
                                          ref_mask.repeat_interleave(cfg.group, 0), tokens)  # [B·G, T]
    model.train()
    enc, mask = model.encode(batch)
    logp = model.rollout_logp(enc.repeat_interleave(cfg.group, 0), mask.repeat_interleave(cfg.group, 0), tokens)
    loss, stats = grpo_loss(logp, logp.detach(), ref_logp, advantages, torch.ones_like(logp, dtype=torch.bool),
                            clip_eps=cfg.clip_eps, kl_beta=cfg.kl_beta)
    stats.update({f"reward_{k}": v.float().mean().item() for k, v in rewards.items()})
    return loss, stats
