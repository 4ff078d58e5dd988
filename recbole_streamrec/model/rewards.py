"""GRPO rewards, advantages and loss of STREAM-Rec stage 3 (SPEC §5, paper eqs. 20–27) as pure functions.

Each reward maps tensors describing ``N`` rollouts to a float tensor ``[N]``, one value per rollout; the
trainer computes the inputs (validity, codes, hidden states, log-probs) and combines the rewards with
:func:`combine_rewards`. :func:`grpo_loss` follows TRL v0.14's ``GRPOTrainer.compute_loss`` plus the
PPO-style clipped ratio of SPEC §5. Hand-worked checks live in ``tests/test_rewards.py``.

Shapes: ``N`` rollouts (``B`` users × ``G`` rollouts each), ``m`` item-code levels, ``d`` hidden size,
``K`` hard negatives, ``T`` rollout length.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

REWARD_NAMES = ("format", "exact_match", "similarity", "thinking_likelihood", "thinking_ranking")


def format_reward(is_valid_item: Tensor) -> Tensor:
    """0 where the m generated item tokens form an existing item, −1 otherwise.

    Args:
        is_valid_item: ``[N]`` bool.

    Returns:
        ``[N]`` float.
    """
    return torch.where(is_valid_item.bool(), 0.0, -1.0).float()


def exact_match_reward(pred_codes: Tensor, target_codes: Tensor) -> Tensor:
    """Number of leading code positions equal to the target's, stopping at the first mismatch (0…m).

    ``[1, 2, 9, 4]`` against ``[1, 2, 3, 4]`` scores 2: the matching 4th code does not count because the
    generated prefix already left the target's branch of the code tree.

    Args:
        pred_codes, target_codes: ``[N, m]`` codes (or token ids; only equality is used).

    Returns:
        ``[N]`` float.
    """
    equal = (pred_codes == target_codes).long()  # [N, m]
    return equal.cumprod(dim=-1).sum(dim=-1).float()  # the running product is 0 from the first mismatch


def similarity_reward(hidden: Tensor, targets: Tensor) -> Tensor:
    """Reward for how well a rollout's hidden state singles out its own target within the batch.

    ``S = hidden @ targetsᵀ`` (``[N, N]``); ``g_b`` = fraction of the N columns j (b itself included) with
    ``S[b, j] ≤ S[b, b]``; reward 0.5 if ``g ≥ 0.99``, 0.1 if ``g ≥ 0.95``, 0.05 if ``g ≥ 0.5``, else −0.1.

    Settled ambiguities: ties count as ``≤`` (in the rollout's favour), and the diagonal is included, so
    ``g ≥ 1/N``. Rollouts of the same user share a target, so when a whole GRPO batch is passed those
    columns tie with the diagonal and count as ``≤`` too; the comparison is taken literally as the SPEC
    writes it. ``g`` is computed in float64 so that e.g. 99/100 compares equal to the 0.99 threshold.

    Args:
        hidden: ``[N, d]`` mean-pooled decoder hidden states of the rollouts.
        targets: ``[N, d]`` target representations (mean of the target's code embeddings).

    Returns:
        ``[N]`` float.
    """
    scores = hidden @ targets.T  # [N, N]
    own = scores.diagonal().unsqueeze(-1)  # [N, 1]
    g = (scores <= own).sum(dim=-1).double() / scores.shape[-1]  # [N]
    reward = torch.full_like(g, -0.1)
    reward = torch.where(g >= 0.5, 0.05, reward)
    reward = torch.where(g >= 0.95, 0.1, reward)
    reward = torch.where(g >= 0.99, 0.5, reward)
    return reward.to(hidden.dtype)


def thinking_likelihood_reward(policy_logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``log π_θ(codes(target) | x, think) − log π_ref(codes(target) | x)``: ``[N]``, ``[N]`` → ``[N]``."""
    return policy_logp - ref_logp


def thinking_ranking_reward(target_logp: Tensor, negative_logp: Tensor) -> Tensor:
    """Reward from the rank of the target among K hard negatives under the thinking-conditioned policy.

    ``p`` = number of negatives whose log-prob is *strictly* greater than the target's (0 = best; ties
    favour the target). Reward 0.2 if ``p = 0``, 0.1 if ``p < 0.1K``, 0.05 if ``p < 0.2K``, 0 if
    ``p < 0.5K``, −0.1 otherwise. Thresholds are compared in integers (``10p < K`` …) so that K = 30 puts
    ``p = 3`` in the 0.05 band, not the 0.1 band (``0.1 * 30`` is 3.0000000000000004 in floating point).

    Args:
        target_logp: ``[N]`` ``log π_θ(codes(target) | x, think)``.
        negative_logp: ``[N, K]`` the same for the K hard negatives.

    Returns:
        ``[N]`` float.
    """
    k = negative_logp.shape[-1]
    p = (negative_logp > target_logp.unsqueeze(-1)).sum(dim=-1)  # [N]
    reward = torch.full(p.shape, -0.1, dtype=target_logp.dtype, device=p.device)
    reward = torch.where(2 * p < k, 0.0, reward)
    reward = torch.where(5 * p < k, 0.05, reward)
    reward = torch.where(10 * p < k, 0.1, reward)
    return torch.where(p == 0, 0.2, reward)


def combine_rewards(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``R = Σ_k w_k r_k`` over the rewards given.

    Every reward needs a weight (``KeyError`` naming the ones without); a weight of 0 switches a reward
    off and its term is skipped entirely, so a NaN/inf reward that is switched off cannot leak in.
    Weights for rewards that were not computed are ignored.

    Args:
        rewards: name → ``[N]`` reward.
        weights: name → weight.

    Returns:
        ``[N]`` float.
    """
    if not rewards:
        raise ValueError("combine_rewards needs at least one reward")
    missing = sorted(set(rewards) - set(weights))
    if missing:
        raise KeyError(f"no weight for reward(s): {', '.join(missing)}")
    total = torch.zeros_like(next(iter(rewards.values())), dtype=torch.get_default_dtype())
    for name, reward in rewards.items():
        if weights[name] != 0:
            total = total + weights[name] * reward
    return total


def group_advantages(rewards: Tensor, *, eps: float = 1e-4) -> Tensor:
    """Group-relative advantages ``(R − mean_group) / (std_group + eps)``.

    ``std`` uses Bessel's correction (torch's default, as TRL does); a group of identical rewards gives 0.
    Groups of one rollout have no defined std, so ``G ≥ 2`` is required.

    Args:
        rewards: ``[B, G]`` one row per user, one column per rollout.

    Returns:
        ``[B, G]``.
    """
    if rewards.shape[-1] < 2:
        raise ValueError(f"group advantages need G >= 2 rollouts per group, got G={rewards.shape[-1]}")
    mean = rewards.mean(dim=-1, keepdim=True)  # [B, 1]
    std = rewards.std(dim=-1, keepdim=True)  # [B, 1]
    return (rewards - mean) / (std + eps)


def per_reward_advantages(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``Σ_k w_k · z_k`` with ``z_k`` reward k's group-relative advantage (``rl_advantage: per_reward``).

    Each reward is normalised within its group before weighting, so its scale no longer decides its say in
    the advantage; a reward that is the same for every rollout of a group contributes 0 there.

    Args:
        rewards: name → ``[B, G]`` reward, one row per user.
        weights: name → weight (as :func:`combine_rewards`).

    Returns:
        ``[B, G]``.
    """
    return combine_rewards({k: group_advantages(r.to(torch.get_default_dtype())) for k, r in rewards.items()},
                           weights)


def reward_statistics(rewards: Mapping[str, Tensor], group: int) -> dict[str, float]:
    """Each reward's mean over the rollouts and its mean *within-group* standard deviation.

    The within-group std (Bessel-corrected, as :func:`group_advantages` uses) is what the advantage sees:
    a reward whose std is 0 in every group carries no learning signal, however large its mean.

    Args:
        rewards: name → ``[B·G]`` reward, rollouts of a user adjacent.
        group: ``G ≥ 2``.

    Returns:
        ``{"<name>_mean": …, "<name>_std": …}`` as floats.
    """
    stats = {}
    for name, reward in rewards.items():
        grouped = reward.double().view(-1, group)  # [B, G]
        stats[f"{name}_mean"] = grouped.mean().item()
        stats[f"{name}_std"] = grouped.std(dim=-1).mean().item()
    return stats


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimator of ``KL(π_θ ‖ π_ref)`` per token: ``exp(ref − logp) − (ref − logp) − 1``.

    Non-negative, 0 exactly where ``logp = ref_logp``; any shape in, same shape out.
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def _masked_sequence_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each sequence's masked tokens, then over sequences: ``[N, T]``, ``[N, T]`` → ``[]``."""
    n_tokens = mask.sum(dim=-1).clamp(min=1)  # [N]; an empty sequence contributes 0
    return ((values * mask).sum(dim=-1) / n_tokens).mean()


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    kl_beta: float = 0.04,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped GRPO surrogate with a k3 KL penalty to the frozen reference policy.

    Per token: ``min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) − β·k3(logp, ref)`` with ``ρ = exp(logp − old_logp)``;
    loss = −(mean over sequences of the mean over each sequence's masked tokens). ``old_logp`` and
    ``ref_logp`` are constants (detached here), so passing ``old_logp = logp`` gives ``ρ = 1`` with
    TRL v0.14's on-policy gradient ``A·∇logp``. A sequence with no masked token contributes 0.

    Args:
        logp: ``[N, T]`` per-token log-probs of the rollout under the current policy (with grad).
        old_logp: ``[N, T]`` the same under the policy that sampled the rollouts.
        ref_logp: ``[N, T]`` the same under the frozen reference (stage-2) policy.
        advantages: ``[N]`` one advantage per rollout, shared by its tokens, or ``[N, T]`` one per token.
        mask: ``[N, T]`` bool or 0/1, true on the rollout's tokens.

    Returns:
        ``(loss [], stats)``. ``stats['kl']`` and ``stats['ratio']`` are averaged like the loss (per
        sequence, then over sequences, as TRL v0.14 reports ``kl``); ``stats['clip_frac']`` is the fraction
        of all masked tokens where the clipped term is the minimum and differs from the unclipped one
        (``ρ > 1+ε`` with ``A > 0`` or ``ρ < 1−ε`` with ``A < 0``), i.e. where the token gets no gradient.
    """
    mask = mask.to(logp.dtype)  # [N, T]
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # [N, 1] or [N, T]
    ratio = torch.exp(logp - old_logp.detach())  # [N, T]
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    kl = k3_kl(logp, ref_logp.detach())  # [N, T]
    objective = torch.min(ratio * adv, clipped * adv) - kl_beta * kl  # [N, T]

    loss = -_masked_sequence_mean(objective, mask)
    with torch.no_grad():
        is_clipped = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))  # [N, T]
        stats = {
            "kl": _masked_sequence_mean(kl, mask).item(),
            "clip_frac": ((is_clipped * mask).sum() / mask.sum().clamp(min=1)).item(),
            "ratio": _masked_sequence_mean(ratio, mask).item(),
        }
    return loss, stats
