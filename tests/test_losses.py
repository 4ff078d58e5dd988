"""Hand-worked checks of recbole_streamrec.model.losses (expected values use plain `math`, never torch)."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_streamrec.model.losses import (
    default_step_weights,
    dpo_loss,
    info_nce,
    quantization_loss,
    sequence_log_prob,
    state_contrastive_loss,
    token_cross_entropy,
)

F64 = torch.float64


def log_softmax_at(row: list[float], index: int) -> float:
    """log softmax(row)[index] in plain Python."""
    return row[index] - math.log(sum(math.exp(z) for z in row))


# logits [1, 2, 3]: two positions over a vocabulary of three tokens
LOGITS = [[[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]]]


# --------------------------------------------------------------------------- token_cross_entropy


def test_token_cross_entropy_mean_over_tokens() -> None:
    logits = torch.tensor(LOGITS, dtype=F64)
    labels = torch.tensor([[2, 0]])
    # −log(e³/(e¹+e²+e³)) and −log(e¹/(e¹+e⁰+e⁻¹)), averaged (label 0 is real here: ignore_index=-100)
    first = -(3 - math.log(math.e + math.e**2 + math.e**3))
    second = -(1 - math.log(math.e + 1 + math.exp(-1)))
    expected = (first + second) / 2
    assert token_cross_entropy(logits, labels, ignore_index=-100).item() == pytest.approx(expected, abs=1e-12)


def test_token_cross_entropy_temperature() -> None:
    logits = torch.tensor(LOGITS, dtype=F64)
    labels = torch.tensor([[1, 2]])
    # τ = 2 halves the logits: rows [0.5, 1, 1.5] and [0.5, 0, -0.5]
    first = -(1.0 - math.log(math.exp(0.5) + math.exp(1.0) + math.exp(1.5)))
    second = -(-0.5 - math.log(math.exp(0.5) + 1.0 + math.exp(-0.5)))
    expected = (first + second) / 2
    got = token_cross_entropy(logits, labels, temperature=2.0)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert got.item() != pytest.approx(token_cross_entropy(logits, labels).item(), abs=1e-3)


def test_token_cross_entropy_ignores_pad() -> None:
    logits = torch.tensor(LOGITS, dtype=F64)
    labels = torch.tensor([[2, 0]])  # second position is PAD = 0 → ignored by default
    expected = -(3 - math.log(math.e + math.e**2 + math.e**3))  # mean over one token
    assert token_cross_entropy(logits, labels).item() == pytest.approx(expected, abs=1e-12)


def test_token_cross_entropy_all_ignored_is_zero_not_nan() -> None:
    logits = torch.tensor(LOGITS, dtype=F64, requires_grad=True)
    loss = token_cross_entropy(logits, torch.tensor([[0, 0]]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


# --------------------------------------------------------------------------- sequence_log_prob


def test_sequence_log_prob_full_and_masked() -> None:
    logits = torch.tensor(LOGITS + [[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]], dtype=F64)  # [2, 2, 3]
    labels = torch.tensor([[2, 0], [1, 0]])
    lp00 = log_softmax_at([1, 2, 3], 2)
    lp01 = log_softmax_at([1, 0, -1], 0)
    lp10 = math.log(1 / 3)
    lp11 = 2 - math.log(math.exp(2) + 2)
    full = sequence_log_prob(logits, labels)
    assert full.shape == (2,)
    assert full.tolist() == pytest.approx([lp00 + lp01, lp10 + lp11], abs=1e-12)

    mask = torch.tensor([[True, False], [True, True]])
    masked = sequence_log_prob(logits, labels, mask)
    assert masked.tolist() == pytest.approx([lp00, lp10 + lp11], abs=1e-12)


def test_sequence_log_prob_never_reads_masked_labels() -> None:
    logits = torch.tensor(LOGITS, dtype=F64)
    labels = torch.tensor([[2, -100]])  # an out-of-range label at a masked position
    got = sequence_log_prob(logits, labels, torch.tensor([[1, 0]]))
    assert got.item() == pytest.approx(log_softmax_at([1, 2, 3], 2), abs=1e-12)


# --------------------------------------------------------------------------- dpo_loss


def test_dpo_loss_hand_numbers() -> None:
    # sample 0: margin = (−1 − (−1.5)) − (−2 − (−1)) = 0.5 + 1 = 1.5 → x = 0.1 · 1.5 = 0.15
    # sample 1: everything equal → margin 0 → −log σ(0) = log 2
    loss = dpo_loss(
        torch.tensor([-1.0, -3.0], dtype=F64),
        torch.tensor([-2.0, -3.0], dtype=F64),
        torch.tensor([-1.5, -3.0], dtype=F64),
        torch.tensor([-1.0, -3.0], dtype=F64),
        beta=0.1,
    )
    neg_log_sigmoid = lambda x: -math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    expected = (neg_log_sigmoid(0.15) + math.log(2)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_dpo_loss_prefers_chosen_and_is_stable() -> None:
    zero = torch.zeros(1)
    good = dpo_loss(torch.tensor([0.0]), torch.tensor([-5.0]), zero, zero, beta=1.0)
    bad = dpo_loss(torch.tensor([-5.0]), torch.tensor([0.0]), zero, zero, beta=1.0)
    assert good.item() < math.log(2) < bad.item()
    # margin −1000 in float32: −log σ(−1000) ≈ 1000, where log(sigmoid(.)) would give inf
    huge = dpo_loss(torch.tensor([-1000.0]), zero, zero, zero, beta=1.0)
    assert huge.item() == pytest.approx(1000.0, rel=1e-6)


# --------------------------------------------------------------------------- quantization_loss


def test_quantization_loss_value_and_gradients() -> None:
    # B = 2, l = 2, d = 2
    r = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [1.0, 1.0]]], dtype=F64, requires_grad=True)
    e = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]], dtype=F64, requires_grad=True)
    beta = 0.25
    # ‖r − e‖² per (b, j): (1+0)=1, (1+1)=2, (4+1)=5, 0 → sample sums 3 and 5
    # both terms have the same value, so L = (1 + β) · (3 + 5) / 2 = 1.25 · 4 = 5
    loss = quantization_loss(r, e, beta=beta)
    assert loss.item() == pytest.approx(5.0, abs=1e-12)

    loss.backward()
    diff = [[[1.0, 0.0], [-1.0, -1.0]], [[2.0, -1.0], [0.0, 0.0]]]  # r − e by hand
    expected_r = [[[2 * beta * x / 2 for x in v] for v in s] for s in diff]  # 2β(r − e)/B
    expected_e = [[[-2 * x / 2 for x in v] for v in s] for s in diff]  # 2(e − r)/B
    assert torch.allclose(r.grad, torch.tensor(expected_r, dtype=F64))
    assert torch.allclose(e.grad, torch.tensor(expected_e, dtype=F64))


def test_quantization_loss_beta_only_scales_commitment() -> None:
    r = torch.tensor([[[2.0]]], requires_grad=True)
    e = torch.tensor([[[0.0]]], requires_grad=True)
    loss = quantization_loss(r, e, beta=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(4.0 + 0.5 * 4.0)
    assert r.grad.item() == pytest.approx(2 * 0.5 * 2.0)  # 2β(r − e)/B with B = 1
    assert e.grad.item() == pytest.approx(2 * (0.0 - 2.0))  # 2(e − r)/B


# --------------------------------------------------------------------------- info_nce / L_State


def info_nce_2x2_hand(tau: float) -> float:
    # q = [1,0], [0,1]; k = [1,0], [1,1] → k̂₁ = [1/√2, 1/√2]
    # cosines: row 0 [1, 1/√2] (positive 1), row 1 [0, 1/√2] (positive 1/√2)
    s = 1 / math.sqrt(2)
    row0 = -(1 / tau - math.log(math.exp(1 / tau) + math.exp(s / tau)))
    row1 = -(s / tau - math.log(math.exp(0.0) + math.exp(s / tau)))
    return (row0 + row1) / 2


def test_info_nce_hand_vectors() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=F64)
    assert info_nce(q, k, temperature=0.5).item() == pytest.approx(info_nce_2x2_hand(0.5), abs=1e-12)
    # cosine similarity: rescaling either side changes nothing
    rescaled = info_nce(3 * q, 0.2 * k, temperature=0.5)
    assert rescaled.item() == pytest.approx(info_nce_2x2_hand(0.5), abs=1e-12)
    assert info_nce(q, k).item() == pytest.approx(info_nce_2x2_hand(0.1), abs=1e-12)


def test_default_step_weights() -> None:
    assert default_step_weights(3).tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert default_step_weights(1).tolist() == [1.0]
    w6 = default_step_weights(6).tolist()
    assert sum(w6) == pytest.approx(1.0)
    assert w6 == sorted(w6) and w6[0] == pytest.approx(1 / 21)
    with pytest.raises(ValueError):
        default_step_weights(0)


def test_state_contrastive_loss_weighted_sum() -> None:
    tau = 0.5
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)  # B = 2, d = 3
    aligned = t  # step 1: each state is its own target
    swapped = t.flip(0)  # step 2: each state is the other sample's target
    orthogonal = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]], dtype=F64)  # step 3: cosine 0 everywhere
    states = torch.stack([aligned, swapped, orthogonal], dim=1)  # [2, 3, 3]
    # per-row InfoNCE: aligned −log(e²/(e²+1)), swapped −log(1/(e²+1)), orthogonal log 2 (1/τ = 2)
    l1 = -(2 - math.log(math.exp(2) + 1))
    l2 = math.log(math.exp(2) + 1)
    l3 = math.log(2)
    expected = l1 / 6 + 2 * l2 / 6 + 3 * l3 / 6
    got = state_contrastive_loss(states, t, temperature=tau)
    assert got.item() == pytest.approx(expected, abs=1e-12)

    custom = torch.tensor([1.0, 0.0, 0.0])
    first_only = state_contrastive_loss(states, t, temperature=tau, weights=custom)
    assert first_only.item() == pytest.approx(l1, abs=1e-12)
    with pytest.raises(ValueError):
        state_contrastive_loss(states, t, weights=torch.ones(2))
