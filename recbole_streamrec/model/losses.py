"""Training losses of TIGER and STREAM-Rec stages 1–2 (SPEC §2, §4, §5) as pure tensor functions.

Every function here takes tensors and keyword-only hyper-parameters and returns a tensor; none of them
sees a model or a config. The trainers decide *what* is fed in (which positions, which states); the maths
of *how* it is scored lives here and is tested against hand-worked numbers in ``tests/test_losses.py``.

Shapes: ``B`` batch, ``T`` target length, ``V`` vocabulary, ``l`` reasoning steps, ``d`` hidden size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gather_log_probs(log_probs: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
    """``log_probs[b, t, labels[b, t]]`` → ``[B, T]``; positions where ``keep`` is false read index 0.

    Dropped positions may hold any label (e.g. ``-100``), so they are replaced before ``gather`` and their
    value must be masked out by the caller.
    """
    safe = labels.masked_fill(~keep, 0)  # [B, T]
    return log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [B, T]


def token_cross_entropy(
    logits: Tensor, labels: Tensor, *, temperature: float = 1.0, ignore_index: int = 0
) -> Tensor:
    """Token-level cross-entropy ``−log softmax(z_t / τ)[y_t]``, averaged over the non-ignored tokens.

    Used for the stage-1 pretraining loss (SPEC §5, eq. 11), ``L_SFT`` and TIGER's loss.

    Args:
        logits: ``[B, T, V]`` decoder logits ``z``.
        labels: ``[B, T]`` target token ids; ``ignore_index`` (default ``PAD = 0``) marks padding.
        temperature: ``τ``; logits are divided by it before the softmax.
        ignore_index: label value that contributes nothing.

    Returns:
        ``[]`` scalar. SPEC §5 writes the stage-1 loss as a *sum* over t; we take the mean over the kept
        tokens (a constant rescaling that keeps the learning rate independent of l, m and padding).
        A batch with no kept token gives 0 rather than NaN.
    """
    keep = labels != ignore_index  # [B, T]
    log_probs = F.log_softmax(logits / temperature, dim=-1)  # [B, T, V]
    nll = -_gather_log_probs(log_probs, labels, keep)  # [B, T]
    return (nll * keep).sum() / keep.sum().clamp(min=1)


def sequence_log_prob(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """``log π(y | x) = Σ_t log softmax(z_t)[y_t]`` over the positions where ``mask`` is true.

    Args:
        logits: ``[B, T, V]`` teacher-forced logits.
        labels: ``[B, T]`` token ids; values at masked-off positions are never read.
        mask: ``[B, T]`` bool (or 0/1); ``None`` keeps every position.

    Returns:
        ``[B]`` sequence log-probabilities (used for ``logit^±`` in ``L_DPO`` and the thinking rewards).
    """
    keep = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool()  # [B, T]
    log_probs = F.log_softmax(logits, dim=-1)  # [B, T, V]
    return (_gather_log_probs(log_probs, labels, keep) * keep).sum(dim=-1)  # [B]


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float,
) -> Tensor:
    """Direct preference optimisation loss ``L_DPO`` (SPEC §5 stage 2).

    ``−log σ(β · ((π_c − ref_c) − (π_r − ref_r)))`` averaged over the batch, via ``F.logsigmoid`` so that a
    large negative margin gives a large finite loss instead of ``log 0``.

    Args:
        policy_chosen, policy_rejected: ``[B]`` ``log π_θ(y^± | x, o_{1..l})``.
        ref_chosen, ref_rejected: ``[B]`` ``log π_ref(y^± | x)``.
        beta: ``β_dpo``.

    Returns:
        ``[]`` scalar.
    """
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)  # [B]
    return -F.logsigmoid(beta * margin).mean()


def quantization_loss(
    residuals: Tensor, codewords: Tensor, *, beta: float = 0.25, update_codebook: bool = True
) -> Tensor:
    """``L_Quant = Σ_j ‖sg[r_j] − e_j‖² + β ‖r_j − sg[e_j]‖²`` (SPEC §5; the paper's leading minus is a typo).

    The first term moves the codeword toward the residual, the second (commitment, weight β) moves the
    residual toward its codeword. Gradients: ``∂L/∂r = 2β(r − e)/B`` and ``∂L/∂e = 2(e − r)/B``.
    With ``update_codebook=False`` (SPEC §5b: E is the token table, L_Quant must not drag its rows toward
    the residuals) the codebook term keeps its value but has no gradient: ``∂L/∂e = 0``.

    Args:
        residuals: ``[B, l, d]`` ``r_j = MLP_r(t − s_{j−1})``.
        codewords: ``[B, l, d]`` ``E_{o_j}``, the chosen reasoning-token embeddings.
        beta: commitment weight β.
        update_codebook: whether the codebook term moves ``codewords``.

    Returns:
        ``[]``: squared L2 summed over d, summed over the l steps, averaged over the batch.
    """
    moving = codewords if update_codebook else codewords.detach()
    codebook = (residuals.detach() - moving).pow(2).sum(dim=-1)  # [B, l]
    commitment = (residuals - codewords.detach()).pow(2).sum(dim=-1)  # [B, l]
    return (codebook + beta * commitment).sum(dim=-1).mean()


def info_nce(queries: Tensor, keys: Tensor, *, temperature: float = 0.1, similarity: str = "cosine") -> Tensor:
    """InfoNCE with in-batch negatives: row b's positive is ``keys[b]``, the other rows are its negatives.

    Similarities are cosines (both sides L2-normalised, ``similarity="cosine"``), raw dot products
    (``"dot"``, the paper's eq. 14) or negative Euclidean distances (``"distance"``: −‖q_b − k_j‖, on the
    vectors' own scale, so the positive is pulled *to* its key, not only turned towards it), divided by τ.
    The loss is one-directional (queries → keys), which is what ``L_State`` needs: states are scored
    against the batch's targets.

    Args:
        queries: ``[B, d]`` (states ``s_{·,j}``).
        keys: ``[B, d]`` (target representations ``t``).
        temperature: τ (pass 1 for the paper's raw dot product).
        similarity: ``cosine`` | ``dot`` | ``distance``.

    Returns:
        ``[]`` cross-entropy averaged over the batch.
    """
    if similarity == "cosine":
        sims = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
    elif similarity == "dot":
        sims = queries @ keys.T
    elif similarity == "distance":
        sims = -torch.cdist(queries, keys)
    else:
        raise ValueError(f"similarity must be 'cosine', 'dot' or 'distance', not {similarity!r}")
    sims = sims / temperature  # [B, B]
    positives = torch.arange(sims.shape[0], device=sims.device)
    return F.cross_entropy(sims, positives)


def default_step_weights(
    l: int,  # noqa: E741  (l is the paper's name)
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Step weights ``w_j = j / Σ_k k`` for ``j = 1..l``: increasing and summing to 1. Returns ``[l]``."""
    if l < 1:
        raise ValueError(f"need at least one reasoning step, got l={l}")
    steps = torch.arange(1, l + 1, dtype=dtype or torch.get_default_dtype(), device=device)  # [l]
    return steps / steps.sum()


def state_contrastive_loss(
    states: Tensor, targets: Tensor, *, temperature: float = 0.1, weights: Tensor | None = None,
    similarity: str = "cosine",
) -> Tensor:
    """``L_State = Σ_j w_j · InfoNCE(s_{·,j}, t_·)`` (SPEC §5 stage 2).

    SPEC §5 computes states ``s_0 … s_l``; which of them are scored is the caller's choice (the trainer
    passes ``s_1 … s_l``, the states reached after each reasoning token). Step ``j`` here is simply
    ``states[:, j − 1]``, so later steps get larger default weights.

    Args:
        states: ``[B, l, d]`` state-head outputs.
        targets: ``[B, d]`` target representations ``t`` (mean of the target's code embeddings).
        temperature: τ of each InfoNCE.
        weights: ``[l]`` step weights; default :func:`default_step_weights`.
        similarity: ``cosine`` | ``dot`` | ``distance`` (see :func:`info_nce`).

    Returns:
        ``[]`` scalar.
    """
    n_steps = states.shape[1]
    if weights is None:
        weights = default_step_weights(n_steps, dtype=states.dtype, device=states.device)
    if weights.shape != (n_steps,):
        raise ValueError(f"weights must have shape ({n_steps},), got {tuple(weights.shape)}")
    weights = weights.to(device=states.device, dtype=states.dtype)
    per_step = torch.stack(
        [info_nce(states[:, j], targets, temperature=temperature, similarity=similarity) for j in range(n_steps)]
    )  # [l]
    return (weights * per_step).sum()
