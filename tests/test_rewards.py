"""Hand-worked checks of recbole_streamrec.model.rewards (expected values use plain Python / `math`)."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_streamrec.model.rewards import (
    REWARD_NAMES,
    combine_rewards,
    exact_match_reward,
    format_reward,
    group_advantages,
    grpo_loss,
    k3_kl,
    per_reward_advantages,
    similarity_reward,
    thinking_likelihood_reward,
    thinking_ranking_reward,
)

F64 = torch.float64


# --------------------------------------------------------------------------- rewards


def test_format_reward() -> None:
    got = format_reward(torch.tensor([True, False, True]))
    assert got.dtype.is_floating_point
    assert got.tolist() == [0.0, -1.0, 0.0]


def test_exact_match_stops_at_first_mismatch() -> None:
    target = torch.tensor([[1, 2, 3, 4]] * 5)
    pred = torch.tensor(
        [
            [1, 2, 9, 4],  # 2: the 4th code matches again but does not count
            [1, 2, 3, 4],  # 4: full match
            [9, 2, 3, 4],  # 0: first code wrong
            [1, 9, 9, 9],  # 1
            [1, 2, 3, 0],  # 3
        ]
    )
    got = exact_match_reward(pred, target)
    assert got.dtype.is_floating_point
    assert got.tolist() == [2.0, 4.0, 0.0, 1.0, 3.0]


def similarity_case(n_above: list[int], n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """``S = hidden @ I = hidden`` (``[n, n]``): row b has ``S[b, b] = 0`` and exactly ``n_above[b]`` other
    columns at 1 (above the diagonal), the rest at 0, so ``g_b = (n − n_above[b]) / n``. Rows past
    ``len(n_above)`` are all zero (every column ties, g = 1) and are not checked."""
    hidden = torch.zeros(n, n, dtype=F64)
    for b, count in enumerate(n_above):
        others = [j for j in range(n) if j != b][:count]
        hidden[b, others] = 1.0
    return hidden, torch.eye(n, dtype=F64)


def test_similarity_reward_every_band() -> None:
    # N = 100: g = 100/100, 96/100, 60/100, 20/100 → 0.5, 0.1, 0.05, −0.1
    got = similarity_reward(*similarity_case([0, 4, 40, 80]))
    assert got.shape == (100,)
    assert got[:4].tolist() == pytest.approx([0.5, 0.1, 0.05, -0.1])


def test_similarity_reward_thresholds_are_inclusive() -> None:
    # g = 0.99, 0.95, 0.5 exactly land in the higher band; 0.98, 0.94, 0.49 in the lower one
    got = similarity_reward(*similarity_case([1, 5, 50, 2, 6, 51]))
    assert got[:6].tolist() == pytest.approx([0.5, 0.1, 0.05, 0.1, 0.05, -0.1])


def test_similarity_reward_ties_count_and_diagonal_included() -> None:
    # N = 2, all scores equal: both columns satisfy S[b, j] ≤ S[b, b] → g = 1
    same = torch.ones(2, 3)
    assert similarity_reward(same, same).tolist() == pytest.approx([0.5, 0.5])
    # N = 2, row 0 prefers the other target: g_0 = 1/2 (only itself) → 0.05; row 1 g = 1 → 0.5
    hidden = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert similarity_reward(hidden, targets).tolist() == pytest.approx([0.05, 0.5])


def test_thinking_likelihood_reward() -> None:
    got = thinking_likelihood_reward(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]))
    assert got.tolist() == pytest.approx([1.0, -2.0])


def ranking_case(ps: list[int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-prob 0; ``p`` negatives at +1 (ranked above it), the rest tie at 0 or sit at −1."""
    negatives = torch.full((len(ps), k), -1.0)
    for row, p in enumerate(ps):
        negatives[row, :p] = 1.0
        negatives[row, p : p + 2] = 0.0  # ties with the target do not push it down
    return torch.zeros(len(ps)), negatives


def test_thinking_ranking_reward_every_band() -> None:
    # K = 50: p = 0 → 0.2; p < 5 → 0.1; p < 10 → 0.05; p < 25 → 0; otherwise −0.1
    got = thinking_ranking_reward(*ranking_case([0, 3, 7, 20, 30], k=50))
    assert got.tolist() == pytest.approx([0.2, 0.1, 0.05, 0.0, -0.1])


def test_thinking_ranking_reward_boundaries() -> None:
    got = thinking_ranking_reward(*ranking_case([4, 5, 9, 10, 24, 25, 50], k=50))
    assert got.tolist() == pytest.approx([0.1, 0.05, 0.05, 0.0, 0.0, -0.1, -0.1])
    # K = 30: 0.1·K = 3, so p = 3 is not "< 0.1K" (float 0.1*30 = 3.0000000000000004 would say it is)
    got30 = thinking_ranking_reward(*ranking_case([2, 3], k=30))
    assert got30.tolist() == pytest.approx([0.1, 0.05])


def test_combine_rewards_weighted_sum() -> None:
    assert REWARD_NAMES == ("format", "exact_match", "similarity", "thinking_likelihood", "thinking_ranking")
    rewards = {"format": torch.tensor([0.0, -1.0]), "exact_match": torch.tensor([2.0, 0.0])}
    weights = {"format": 1.0, "exact_match": 0.5, "similarity": 3.0}  # unused weight is ignored
    # [1·0 + 0.5·2, 1·(−1) + 0.5·0] = [1, −1]
    assert combine_rewards(rewards, weights).tolist() == pytest.approx([1.0, -1.0])


def test_combine_rewards_zero_weight_switches_off() -> None:
    rewards = {"format": torch.tensor([0.0, -1.0]), "similarity": torch.tensor([float("nan"), 0.5])}
    got = combine_rewards(rewards, {"format": 2.0, "similarity": 0.0})
    assert got.tolist() == pytest.approx([0.0, -2.0])


def test_combine_rewards_missing_weight_raises() -> None:
    rewards = {"format": torch.zeros(2), "thinking_ranking": torch.zeros(2)}
    with pytest.raises(KeyError, match="thinking_ranking"):
        combine_rewards(rewards, {"format": 1.0})


# --------------------------------------------------------------------------- advantages and KL


def test_group_advantages_hand_numbers() -> None:
    got = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=F64))
    # row 0: mean 2, Bessel std sqrt((1 + 0 + 1) / 2) = 1; row 1: identical rewards → 0
    d = 1 + 1e-4
    assert got.tolist() == [pytest.approx([-1 / d, 0.0, 1 / d]), [0.0, 0.0, 0.0]]


def test_group_advantages_bessel_and_eps() -> None:
    # [0, 4]: mean 2, Bessel std sqrt((4 + 4) / 1) = sqrt(8) (population std would be 2)
    got = group_advantages(torch.tensor([[0.0, 4.0]], dtype=F64), eps=0.5)
    assert got.tolist()[0] == pytest.approx([-2 / (math.sqrt(8) + 0.5), 2 / (math.sqrt(8) + 0.5)])
    with pytest.raises(ValueError):
        group_advantages(torch.ones(3, 1))


def test_per_reward_advantages_give_each_reward_its_own_scale() -> None:
    # "big" spreads 100× more than "small" and ranks the rollouts the other way round
    rewards = {"big": torch.tensor([[0.0, 100.0, 200.0]], dtype=F64),
               "small": torch.tensor([[2.0, 1.0, 0.0]], dtype=F64)}
    weights = {"big": 1.0, "small": 1.0}
    summed = group_advantages(combine_rewards(rewards, weights).view(1, 3))
    assert summed[0, 0] < summed[0, 2]  # the sum follows "big" alone
    got = per_reward_advantages(rewards, weights)
    # each reward's z-scores are [-1, 0, 1] and [1, 0, -1] (up to eps): they cancel
    assert got.tolist()[0] == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)
    got = per_reward_advantages(rewards, {"big": 1.0, "small": 2.0})
    assert got.tolist()[0] == pytest.approx([1.0, 0.0, -1.0], abs=1e-3)


def test_k3_kl() -> None:
    logp = torch.tensor([-1.0, -2.0, 0.0, 0.0], dtype=F64)
    ref = torch.tensor([-1.0, -2.0, math.log(2), -math.log(2)], dtype=F64)
    # ref − logp = 0, 0, ln 2, −ln 2 → e^δ − δ − 1 = 0, 0, 1 − ln 2, ln 2 − 1/2
    expected = [0.0, 0.0, 1 - math.log(2), 0.5 + math.log(2) - 1]
    assert k3_kl(logp, ref).tolist() == pytest.approx(expected, abs=1e-12)
    random = k3_kl(torch.randn(100), torch.randn(100))
    assert torch.all(random >= 0)


# --------------------------------------------------------------------------- grpo_loss


def test_grpo_loss_on_policy_equals_minus_mean_advantage() -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.0]], dtype=F64)
    ref = torch.tensor([[-5.0, 0.0, -1.0], [-2.0, -2.0, -2.0]], dtype=F64)  # irrelevant when β = 0
    adv = torch.tensor([1.0, -2.0], dtype=F64)
    loss, stats = grpo_loss(logp, logp, ref, adv, torch.ones(2, 3), kl_beta=0.0)
    assert loss.item() == pytest.approx(-(1.0 - 2.0) / 2)  # = 0.5
    assert stats["ratio"] == pytest.approx(1.0)
    assert stats["clip_frac"] == 0.0
    assert set(stats) == {"kl", "clip_frac", "ratio"}
    assert all(isinstance(v, float) for v in stats.values())


def test_grpo_loss_gradient_at_ratio_one() -> None:
    # N = 2, T = 3: ∂loss/∂logp[n, t] = −A_n / (T · N); old_logp is the same tensor (treated as constant)
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.0]], dtype=F64, requires_grad=True)
    adv = torch.tensor([1.0, -2.0], dtype=F64)
    loss, _ = grpo_loss(logp, logp, logp.detach(), adv, torch.ones(2, 3), kl_beta=0.0)
    loss.backward()
    expected = [[-1.0 / 6] * 3, [2.0 / 6] * 3]
    assert logp.grad.tolist() == [pytest.approx(row) for row in expected]


def test_grpo_loss_per_token_advantages() -> None:
    # [N, T] advantages: ∂loss/∂logp[n, t] = −A[n, t] / (T · N); a row-constant [N, T] equals the [N] form
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.0]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[1.0, 0.0, 3.0], [-2.0, -2.0, 0.0]], dtype=F64)
    loss, _ = grpo_loss(logp, logp, logp.detach(), adv, torch.ones(2, 3), kl_beta=0.0)
    loss.backward()
    assert logp.grad.tolist() == [pytest.approx([-1 / 6, 0.0, -3 / 6]), pytest.approx([2 / 6, 2 / 6, 0.0])]
    row = torch.tensor([1.0, -2.0], dtype=F64)
    by_row, _ = grpo_loss(logp, logp, logp.detach(), row, torch.ones(2, 3), kl_beta=0.0)
    by_token, _ = grpo_loss(logp, logp, logp.detach(), row.unsqueeze(1).expand(2, 3), torch.ones(2, 3), kl_beta=0.0)
    assert by_row.item() == pytest.approx(by_token.item())


def test_grpo_loss_clipping_depends_on_sign_of_advantage() -> None:
    # four one-token rollouts: ratios 1.5, 1.5, 0.5, 0.5 with A = +1, −1, +1, −1 (ε = 0.2 → [0.8, 1.2])
    ratios = [1.5, 1.5, 0.5, 0.5]
    old = torch.zeros(4, 1, dtype=F64)
    logp = torch.tensor([[math.log(r)] for r in ratios], dtype=F64, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)
    loss, stats = grpo_loss(logp, old, logp.detach(), adv, torch.ones(4, 1), kl_beta=0.0)
    # objectives: min(1.5, 1.2) = 1.2 (clipped), min(−1.5, −1.2) = −1.5, min(0.5, 0.8) = 0.5,
    #             min(−0.5, −0.8) = −0.8 (clipped) → loss = −(1.2 − 1.5 + 0.5 − 0.8)/4 = 0.15
    assert loss.item() == pytest.approx(0.15)
    assert stats["clip_frac"] == pytest.approx(0.5)
    assert stats["ratio"] == pytest.approx((1.5 + 1.5 + 0.5 + 0.5) / 4)
    loss.backward()
    # clipped tokens get no gradient; others −ρ·A/N: −(1.5·−1)/4 = 0.375, −(0.5·1)/4 = −0.125
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, 0.375, -0.125, 0.0])


def test_grpo_loss_masks_tokens_and_kl_penalty() -> None:
    # ratio 1 and A = 0, so only the KL term is left; δ = ref − logp per token
    logp = torch.zeros(2, 3, dtype=F64)
    ref = torch.tensor([[math.log(2), 0.0, 5.0], [-math.log(2), 9.0, 9.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, stats = grpo_loss(logp, logp, ref, torch.zeros(2, dtype=F64), mask, kl_beta=0.04)
    # sequence 0: mean(1 − ln2, 0) = (1 − ln2)/2; sequence 1: ln2 − 1/2 → mean over sequences = ln2/4
    kl = ((1 - math.log(2)) / 2 + (math.log(2) - 0.5)) / 2
    assert kl == pytest.approx(math.log(2) / 4)
    assert stats["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.04 * kl)

    # masked-out tokens can hold anything without changing the loss
    wild = logp.clone()
    wild[0, 2], wild[1, 1:] = 50.0, -50.0
    loss_wild, _ = grpo_loss(wild, logp, ref, torch.zeros(2, dtype=F64), mask, kl_beta=0.04)
    assert loss_wild.item() == pytest.approx(loss.item())


def test_grpo_loss_per_sequence_mean_and_empty_rows() -> None:
    # ratio 1, β = 0: each sequence's objective is its A, whatever its length; an empty row contributes 0
    logp = torch.zeros(3, 4, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    adv = torch.tensor([1.0, 3.0, 7.0], dtype=F64)
    loss, stats = grpo_loss(logp, logp, logp, adv, mask, kl_beta=0.0)
    assert loss.item() == pytest.approx(-(1.0 + 3.0 + 0.0) / 3)
    assert not math.isnan(stats["ratio"])
