"""STREAM-Rec's model maths on the tiny dataset (SPEC §5): annotation, the stage losses, inference, GRPO pieces.

Pure loss and reward maths are tested by hand in ``test_losses.py`` and ``test_rewards.py``; here the model
feeds them, so the checks are about *what* is fed: which decoder, which positions, which reference. Hand
versions use the uncached ``transformers`` decoder (``model.t5.decoder`` on the whole token sequence), so
they are independent of the KV cache the model uses.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import init_seed
from torch import Tensor

from recbole_streamrec.config import Config
from recbole_streamrec.data.item_vectors import item_vectors
from recbole_streamrec.model.rewards import REWARD_NAMES, group_advantages
from recbole_streamrec.model.streamrec import STREAMRec
from recbole_streamrec.model.t5_decoding import CachedT5Decoder
from recbole_streamrec.tokenizer.codes import EOS, FIRST_CODE, PAD, tokens_to_codes
from recbole_streamrec.trainer.grpo import GRPOConfig, grpo_loss_on_batch, rollout_rewards

from conftest import CHAIN_LEN, DATASET, N_CHAINS, overrides

N_ITEMS = N_CHAINS * CHAIN_LEN + 1  # RecBole's item count includes the padding id 0
M = 4  # codes per item
# small STREAM-Rec keys for a 40-item catalogue
STREAM_KEYS: dict[str, Any] = {
    "reasoning_steps": 2, "rl_hard_negatives": 5, "dpo_negative_pool": 3, "rl_group_size": 2,
    "rl_batch_size": 16, "rl_steps_per_epoch": 2, "pt_epochs": 1, "sft_rounds": 1, "sft_epochs_per_round": 1,
    "rl_epochs": 1, "reasoning_decoding": "greedy",  # the decoding tests below name the other modes
}


# ---- fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def make_stream(tiny_root, tiny_data) -> Callable[..., tuple[STREAMRec, Config]]:
    """``make_stream(reasoning_steps=3)`` → ``(untrained STREAMRec in eval mode, its config)``."""
    train = tiny_data[2]

    def build(**extra: Any) -> tuple[STREAMRec, Config]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", [sys.argv[0]])
            mp.chdir(tiny_root)
            config = Config(model="STREAMRec", dataset=DATASET,
                            config_dict=overrides(tiny_root, "STREAMRec", **{**STREAM_KEYS, **extra}))
            # a cache miss (semantic IDs, neighbours) consumes random numbers: fill the caches first so
            # the seeded build below gives the same weights whichever test runs first
            STREAMRec(config, train._dataset)
            init_seed(config["seed"], config["reproducibility"])
            return STREAMRec(config, train._dataset).eval(), config

    return build


@pytest.fixture(scope="module")
def built(make_stream) -> tuple[STREAMRec, Config]:
    """The default tiny STREAM-Rec (l = 2), untrained, stage 'sft', with a perturbed copy of itself as π_ref."""
    model, config = make_stream()
    model.set_stage("sft")
    model.set_reference(perturbed(model, seed=1))
    return model, config


@pytest.fixture(scope="module")
def stream(built) -> STREAMRec:
    return built[0]


@pytest.fixture(scope="module")
def train_rows(tiny_data) -> Interaction:
    """64 training rows drawn at random (many users, so in-batch negatives differ)."""
    feat = tiny_data[2]._dataset.inter_feat
    return feat[torch.randperm(len(feat), generator=torch.Generator().manual_seed(0))[:64]]


@torch.no_grad()
def perturbed(model: STREAMRec, *, seed: int, scale: float = 0.05) -> STREAMRec:
    """A copy of ``model`` (without its π_ref) with every parameter moved by Gaussian noise."""
    reference = model._reference
    model.set_reference(None)
    other = copy.deepcopy(model)
    model.set_reference(reference)
    gen = torch.Generator().manual_seed(seed)
    for p in other.parameters():
        p.add_(scale * torch.randn(p.shape, generator=gen))
    return other


def with_reasoning(model: STREAMRec, rows: Interaction) -> Interaction:
    """``rows`` plus the model's annotation in the ``reasoning_tokens`` field (as the trainer writes it)."""
    out = Interaction(dict(rows.interaction))
    out[model.REASONING_FIELD] = model.annotate(rows)
    return out


@torch.no_grad()
def iterative_inference_by_hand(model: STREAMRec, batch) -> dict[str, Tensor]:
    """SPEC §5's annotation loop on the *uncached* decoder with a brute-force argmin over ℂ.

    Returns ``tokens`` o_1..o_l ``[B, l]``, ``states`` s_0..s_l ``[B, l+1, d]``, ``residuals`` r_1..r_l
    ``[B, l, d]`` and ``target`` t ``[B, d]``.
    """
    enc, mask = model.encode(batch)
    table = model.t5.shared.weight  # E, [V, d]
    K = model.codebook_size

    def step_ids(i: int) -> Tensor:  # cyclic: level (i mod m)'s K codes (residual quantisation); all: ℂ
        if model.reasoning_levels == "all":
            return torch.arange(FIRST_CODE, table.shape[0])
        return torch.arange(FIRST_CODE + (i % M) * K, FIRST_CODE + (i % M + 1) * K)

    target = table[model.item_tokens[batch[model.POS_ITEM_ID]]].mean(dim=1)  # t = mean_j E[codes_j], [B, d]
    target = model.code_scale * target  # m·t with state_head: codes (SPEC §5b: one scale with the codes)
    seq = torch.full((target.shape[0], 1), PAD, dtype=torch.long)
    d_sum, code_sum, tokens, states, residuals = 0, torch.zeros_like(target), [], [], []
    for i in range(model.n_reasoning + 1):
        hidden = model.t5.decoder(input_ids=seq, encoder_hidden_states=enc,
                                  encoder_attention_mask=mask).last_hidden_state  # [B, i+1, d]
        d_sum = d_sum + hidden[:, -1]  # Σ_{j≤i} d_j
        # s_i = Σ_{j≤i} E_{o_j} + MLP_s(Σ_{j≤i} d_j) with state_head: codes (SPEC §5b), MLP_s(Σ d_j) otherwise
        states.append(model.mlp_s(d_sum) + (code_sum if model.state_head == "codes" else 0))
        if i == model.n_reasoning:
            break
        r = model.mlp_r(target - states[-1])  # r_{i+1} = MLP_r(t − s_i)
        code_ids = step_ids(i)
        dist = (table[code_ids].unsqueeze(0) - r.unsqueeze(1)).norm(dim=-1)  # ‖E_k − r‖ over the step's codes
        token = code_ids[dist.argmin(dim=1)]  # o_{i+1}
        residuals.append(r)
        tokens.append(token)
        code_sum = code_sum + table[token]
        seq = torch.cat([seq, token.unsqueeze(1)], dim=1)
    return {"tokens": torch.stack(tokens, 1), "states": torch.stack(states, 1),
            "residuals": torch.stack(residuals, 1), "target": target}


# ---- 1. annotation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["untrained", "sharp residual head, l=3"])
def test_annotate_is_the_brute_force_iterative_residual_inference(make_stream, stream, tiny_batch,
                                                                  variant: str) -> None:
    """``annotate`` (batched, KV-cached, ``nearest_code``) picks the same o_i as the loop written out by hand.

    An untrained residual head outputs small vectors, so few distinct codes win the argmin; the second
    variant scales ``MLP_r``'s output to the size of the embeddings so that many codes are picked.
    """
    model = stream
    if variant != "untrained":
        model, _ = make_stream(reasoning_steps=3)
        with torch.no_grad():
            model.mlp_r[2].weight.mul_(30.0)
            model.mlp_r[2].bias.mul_(30.0)
    tokens = model.annotate(tiny_batch)
    by_hand = iterative_inference_by_hand(model, tiny_batch)["tokens"]
    assert tokens.shape == (tiny_batch[model.ITEM_SEQ].shape[0], model.n_reasoning)
    assert ((tokens >= FIRST_CODE) & (tokens < FIRST_CODE + M * model.codebook_size)).all()
    assert tokens.tolist() == by_hand.tolist()
    if variant != "untrained":
        assert tokens.unique().numel() >= 5, "the comparison should cover many different codes"


# ---- 2. SFT trains the heads that drive the annotation ----------------------------------------------
def state_margin(states: Tensor, target: Tensor, similarity: str = "cosine") -> Tensor:
    """Per step j: sim(s_{b,j}, t_b) − mean_{b'} sim(s_{b,j}, t_{b'}), averaged over b → ``[l+1]``.

    This is what ``L_State`` (InfoNCE with in-batch negatives) rewards: the state singles out its own target
    among the batch's targets. ``sim`` is the cosine, or −‖s − t‖ for ``state_similarity: distance``.
    """
    if similarity == "distance":
        sims = -torch.cdist(states.transpose(0, 1), target.unsqueeze(0).expand(states.shape[1], -1, -1))
        sims = sims.transpose(0, 1)  # [B, l+1, B]
    else:
        sims = F.normalize(states, dim=-1) @ F.normalize(target, dim=-1).T  # [B, l+1, B]
    own = sims.diagonal(dim1=0, dim2=2).T  # [B, l+1]
    return (own - sims.mean(dim=-1)).mean(dim=0)


@pytest.fixture(scope="module")
def sft_trained(make_stream, tiny_data) -> tuple[STREAMRec, STREAMRec]:
    """``(untrained, trained)``, l = 3: three staggered rounds (annotate all rows → 2 epochs of ``sft_loss``).

    ``state_weight`` δ = 1 (default 0.1): with a few seconds of training the default leaves the state
    head's signal small next to L_SFT; the assertions are about what L_State does, not about δ.
    """
    model, _ = make_stream(state_weight=1.0, reasoning_steps=3)
    model.set_reference(copy.deepcopy(model))
    model.set_stage("sft")
    untrained = copy.deepcopy(model)
    feat = tiny_data[2]._dataset.inter_feat
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)  # the DPO negatives
    for _ in range(3):
        model.eval()
        annotated = with_reasoning(model, feat)
        model.train()
        for _ in range(2):
            order = torch.randperm(len(feat), generator=gen)
            for start in range(0, len(feat), 64):
                optimizer.zero_grad()
                sum(model.sft_loss(annotated[order[start : start + 64]])).backward()
                optimizer.step()
    return untrained.eval(), model.eval()


def test_sft_moves_residuals_onto_their_codes_and_states_toward_the_target(sft_trained, train_rows) -> None:
    """What SPEC §5 trains, read off fresh annotations of 64 training rows:

    * ``L_Quant`` pulls r_i toward E_{o_i} (and E_{o_i} toward r_i): ‖r_i − E_{o_i}‖² shrinks;
    * ``L_State`` (InfoNCE over −‖s − t‖, w_j increasing in j: ``state_similarity: distance``) makes s_j
      single out its own target t among the batch's targets: the distance margin grows with training and is
      larger at step l than at step 1, and ‖s_j − t‖ itself shrinks (a cosine InfoNCE would leave it free).
    """
    before, after = (iterative_inference_by_hand(m, train_rows) for m in sft_trained)
    table_before, table_after = (m.t5.shared.weight.detach() for m in sft_trained)

    def quant_gap(trace, table) -> float:
        return (trace["residuals"] - table[trace["tokens"]]).pow(2).sum(-1).mean().item()

    assert quant_gap(after, table_after) < 0.5 * quant_gap(before, table_before)
    assert sft_trained[1].state_similarity == "distance"  # the default
    margin_before = state_margin(before["states"], before["target"], "distance")  # [l+1]
    margin_after = state_margin(after["states"], after["target"], "distance")
    assert margin_after[-1] > margin_after[1] + 1.0, margin_after
    # cyclic levels start from the target's own codes (margins 2–8 already), so the gain is smaller
    assert (margin_after[1:] > margin_before[1:] + 0.3).all(), (margin_before, margin_after)
    # the distance is trained now: s_j comes closer to t than the codes alone bring it, and falls with j
    dist_before, dist_after = ((tr["states"] - tr["target"].unsqueeze(1)).norm(dim=-1).mean(0)  # [l+1]
                               for tr in (before, after))
    assert (dist_after[1:] < dist_before[1:]).all(), (dist_before, dist_after)
    assert (dist_after[1:] < dist_after[:-1]).all(), dist_after



# ---- 3. the SFT objective and its reference ---------------------------------------------------------
def t5_with_decoder(model: STREAMRec, decoder) -> Any:
    """A copy of ``model.t5`` whose decoder holds ``decoder``'s weights (to score with ``transformers``)."""
    t5 = copy.deepcopy(model.t5)
    t5.decoder.load_state_dict(decoder.state_dict())
    return t5


@torch.no_grad()
def t5_item_logp(model: STREAMRec, t5, batch, prefix: Tensor, items: Tensor) -> Tensor:
    """log π(codes(items) | x, prefix) ``[B]`` from ``transformers``' full forward (EOS not counted)."""
    ids, mask = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    labels = torch.cat([prefix, model.item_labels(items)], dim=1)  # [B, l + m + 1]
    logp = t5(input_ids=ids, attention_mask=mask, decoder_input_ids=model.shift_right(labels)).logits.log_softmax(-1)
    picked = logp.gather(2, labels.unsqueeze(-1)).squeeze(-1)  # [B, l + m + 1]
    return picked[:, prefix.shape[1] : prefix.shape[1] + M].sum(dim=1)


def sft_parts(model: STREAMRec, batch, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)  # the DPO negative is drawn at random
    with torch.no_grad():
        return [part.item() for part in model.sft_loss(batch)]


def test_sft_loss_has_four_finite_parts_and_dpo_scores_against_pi_ref(built, train_rows, monkeypatch) -> None:
    """``λ·L_DPO`` by hand: policy = reasoning decoder after the think prefix; π_ref = the reference's
    encoder + *direct* decoder with no prefix. Changing π_ref changes that part and only that part."""
    model, config = built
    batch = with_reasoning(model, train_rows)
    parts = sft_parts(model, batch)
    assert len(parts) == 4 and all(np.isfinite(parts)) and min(parts) > 0, parts

    items, think = batch[model.POS_ITEM_ID], batch[model.REASONING_FIELD]
    negatives = model.neighbours[items, 1]
    monkeypatch.setattr(STREAMRec, "_draw_negatives", lambda self, _: negatives)
    reference = model._reference
    policy_t5, ref_t5 = model.t5, t5_with_decoder(reference, reference.direct_decoder)
    empty = think[:, :0]
    margin = ((t5_item_logp(model, policy_t5, batch, think, items) - t5_item_logp(model, ref_t5, batch, empty, items))
              - (t5_item_logp(model, policy_t5, batch, think, negatives)
                 - t5_item_logp(model, ref_t5, batch, empty, negatives)))
    expected = config["dpo_weight"] * -F.logsigmoid(config["dpo_beta"] * margin).mean()
    same = sft_parts(model, batch)
    assert same[1] == pytest.approx(expected.item(), abs=1e-5)

    try:
        other = copy.deepcopy(reference)
        with torch.no_grad():
            for p in other.t5.decoder.block.parameters():
                p.add_(0.1)
        model.set_reference(other)
        assert sft_parts(model, batch) == same, "π_ref's reasoning decoder plays no part"
        model.set_reference(perturbed(model, seed=2))
        changed = sft_parts(model, batch)
        assert changed[0] == same[0] and changed[2:] == same[2:], (same, changed)
        assert abs(changed[1] - same[1]) > 1e-4, (same, changed)
        model.set_reference(None)
        with pytest.raises(RuntimeError, match="π_ref"):
            model.sft_loss(batch)
    finally:
        model.set_reference(reference)


def test_dpo_negatives_come_from_the_most_similar_items(stream) -> None:
    items = torch.arange(1, N_ITEMS).repeat(30)
    torch.manual_seed(0)
    negatives = stream._draw_negatives(items)
    pool = stream.neighbours[items, :3]  # dpo_negative_pool = 3
    slot = (negatives.unsqueeze(1) == pool).float().argmax(dim=1)
    assert (negatives.unsqueeze(1) == pool).any(dim=1).all() and (negatives != items).all()
    assert slot.unique().tolist() == [0, 1, 2], "every one of the pool's items is drawn"


def test_calculate_loss_dispatches_on_the_stage(stream, train_rows) -> None:
    batch = with_reasoning(stream, train_rows)
    try:
        stream.set_stage("pretrain")
        with torch.no_grad():
            got, want = stream.calculate_loss(batch), stream.pretrain_loss(batch)
        assert len(got) == 2 and [g.item() for g in got] == [w.item() for w in want]
        stream.set_stage("sft")
        torch.manual_seed(0)
        with torch.no_grad():
            got = [g.item() for g in stream.calculate_loss(batch)]
        assert got == sft_parts(stream, batch, seed=0)
        stream.set_stage("rl")
        with pytest.raises(RuntimeError, match="GRPO"):
            stream.calculate_loss(batch)
        with pytest.raises(ValueError, match="stage"):
            stream.set_stage("dpo")
    finally:
        stream.set_stage("sft")


# ---- 4. stage 1: lengthened targets ------------------------------------------------------------------
def brute_force_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """``[n_items, d]`` → ``[n_items − 1, k]``: for items 1.., the k other real items of highest cosine."""
    unit = vectors.astype(np.float64) / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows = []
    for i in range(1, len(vectors)):
        others = [j for j in range(1, len(vectors)) if j != i]
        rows.append(sorted(others, key=lambda j: -float(unit[i] @ unit[j]))[:k])
    return np.array(rows)


def test_neighbour_table_is_the_brute_force_cosine_ranking(built, tiny_data) -> None:
    model, config = built
    vectors, _ = item_vectors(config, tiny_data[2]._dataset)
    assert model.neighbours.shape == (N_ITEMS, 5)  # max(k=2, dpo pool 3, RL negatives 5)
    np.testing.assert_array_equal(model.neighbours[1:].numpy(), brute_force_neighbours(vectors, 5))


def test_pretrain_targets_are_two_neighbours_then_the_item(built, tiny_data, train_rows, monkeypatch) -> None:
    """Y = [codes(n₁); codes(n₂); codes(i); EOS] on the reasoning decoder, [codes(i); EOS] on the direct one;
    both losses equal ``transformers``' own cross-entropy on those labels (τ = 1), and τ divides the logits."""
    model, config = built
    seen = []
    original = STREAMRec.decode_hidden

    def spy(self, decoder, labels, enc, mask):
        seen.append((decoder, labels.clone()))
        return original(self, decoder, labels, enc, mask)

    monkeypatch.setattr(STREAMRec, "decode_hidden", spy)
    with torch.no_grad():
        lengthened, direct = model.pretrain_loss(train_rows)
    (decoder, labels), (direct_decoder, direct_labels) = seen
    assert decoder is model.t5.decoder and direct_decoder is model.direct_decoder

    def codes(item: int) -> list[int]:  # code c at level d ↦ 2 + K·d + c
        return [FIRST_CODE + model.codebook_size * d + int(c) for d, c in enumerate(model.item_codes[item])]

    near = brute_force_neighbours(item_vectors(config, tiny_data[2]._dataset)[0], 2)  # row i−1 ↦ item i
    for b, item in enumerate(train_rows[model.POS_ITEM_ID].tolist()):
        n1, n2 = near[item - 1]
        assert labels[b].tolist() == codes(n1) + codes(n2) + codes(item) + [EOS]
        assert direct_labels[b].tolist() == codes(item) + [EOS]

    ids, mask = model.history_tokens(train_rows[model.ITEM_SEQ], train_rows[model.ITEM_SEQ_LEN])
    with torch.no_grad():
        assert lengthened.item() == pytest.approx(model.t5(input_ids=ids, attention_mask=mask,
                                                           labels=labels).loss.item(), abs=1e-5)
        direct_t5 = t5_with_decoder(model, model.direct_decoder)
        assert direct.item() == pytest.approx(direct_t5(input_ids=ids, attention_mask=mask,
                                                        labels=direct_labels).loss.item(), abs=1e-5)
        monkeypatch.setattr(model, "pt_temperature", 2.0)
        logits = model.t5(input_ids=ids, attention_mask=mask, labels=labels).logits  # [B, T, V]
        want = F.cross_entropy(logits.flatten(0, 1) / 2.0, labels.flatten())
        assert model.pretrain_loss(train_rows)[0].item() == pytest.approx(want.item(), abs=1e-5)


# ---- 5. inference: think, then constrained beam search ----------------------------------------------
def predict_and_record(model: STREAMRec, batch, monkeypatch) -> tuple[Tensor, list[Tensor]]:
    """``full_sort_predict`` and the tokens fed to every cached decoder step, in order."""
    fed = []
    original = CachedT5Decoder.step

    def spy(self, tokens, state):
        fed.append(tokens.clone())
        return original(self, tokens, state)

    with monkeypatch.context() as mp:
        mp.setattr(CachedT5Decoder, "step", spy)
        return model.full_sort_predict(batch), fed


def assert_scores_are_real_items(model: STREAMRec, scores: Tensor, n_users: int) -> None:
    assert scores.shape == (n_users, N_ITEMS)
    live = torch.isfinite(scores)
    assert not live[:, 0].any(), "the padding column is never a recommendation"
    assert (live.sum(dim=1) == model.beam_size).all()
    assert (scores[live] <= 0).all() and not torch.isnan(scores).any()


def level_codes(model: STREAMRec, step: int) -> tuple[int, int]:
    """Token ids ``[start, end)`` of prefix token ``step``: level (step mod m)'s codes, or ℂ with ``all``."""
    if model.reasoning_levels == "all":
        return FIRST_CODE, FIRST_CODE + M * model.codebook_size
    start = FIRST_CODE + (step % M) * model.codebook_size
    return start, start + model.codebook_size


@torch.no_grad()
def greedy_prefix_by_hand(model: STREAMRec, batch, steps: int) -> Tensor:
    """``steps`` greedy tokens, each over its step's codes (level i mod m: ``reasoning_levels: cyclic``), from
    ``transformers``' uncached forward, ``[B, steps]``."""
    ids, mask = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    seq = torch.full((ids.shape[0], 1), PAD, dtype=torch.long)
    for i in range(steps):
        logits = model.t5(input_ids=ids, attention_mask=mask, decoder_input_ids=seq).logits[:, -1]  # [B, V]
        start, end = level_codes(model, i)
        seq = torch.cat([seq, start + logits[:, start:end].argmax(dim=1, keepdim=True)], dim=1)
    return seq[:, 1:]


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_inference_thinks_for_inference_reasoning_steps(make_stream, tiny_batch, monkeypatch, steps: int) -> None:
    """Decoder calls: start token, ``steps`` greedy reasoning tokens, then m − 1 beam steps whose first
    feeds level-0 item codes. The reasoning tokens are the greedy ones of the uncached forward."""
    model, _ = make_stream(inference_reasoning_steps=steps)
    model.set_stage("sft")
    scores, fed = predict_and_record(model, tiny_batch, monkeypatch)
    n_users, k = tiny_batch[model.ITEM_SEQ].shape[0], model.codebook_size
    assert_scores_are_real_items(model, scores, n_users)
    assert len(fed) == 1 + steps + (M - 1)
    assert fed[0].tolist() == [[PAD]] * n_users
    think = torch.cat(fed[1 : 1 + steps], dim=1) if steps else torch.zeros(n_users, 0, dtype=torch.long)
    assert think.tolist() == greedy_prefix_by_hand(model, tiny_batch, steps).tolist()
    first_item = fed[1 + steps]
    assert first_item.shape == (n_users * model.beam_size, 1)
    assert ((first_item >= FIRST_CODE) & (first_item < FIRST_CODE + k)).all(), "level-0 codes"


def test_a_pretrained_model_thinks_with_2m_neighbour_tokens(stream, tiny_batch, monkeypatch) -> None:
    try:
        stream.set_stage("pretrain")
        scores, fed = predict_and_record(stream, tiny_batch, monkeypatch)
    finally:
        stream.set_stage("sft")
    assert_scores_are_real_items(stream, scores, tiny_batch[stream.ITEM_SEQ].shape[0])
    assert len(fed) == 1 + 2 * M + (M - 1)
    prefix = torch.cat(fed[1 : 1 + 2 * M], dim=1)  # [B, 2m]
    assert ((prefix >= FIRST_CODE) & (prefix < FIRST_CODE + M * stream.codebook_size)).all()


@torch.no_grad()
def best_two_token_prefix_by_hand(model: STREAMRec, batch) -> Tensor:
    """argmax over all prefixes (o₁, o₂), each from its step's codes, of log p(o₁) + log p(o₂ | o₁) → ``[B, 2]``."""
    ids, mask = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    (s1, e1), (s2, e2) = level_codes(model, 0), level_codes(model, 1)
    first_codes, second_codes = torch.arange(s1, e1), torch.arange(s2, e2)
    n, c1, c2 = ids.shape[0], e1 - s1, e2 - s2
    start = torch.full((n, 1), PAD, dtype=torch.long)
    first = model.t5(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits[:, -1, s1:e1]
    seq = torch.stack([torch.full((n * c1,), PAD, dtype=torch.long), first_codes.repeat(n)], dim=1)  # [B·c1, 2]
    second = model.t5(input_ids=ids.repeat_interleave(c1, 0), attention_mask=mask.repeat_interleave(c1, 0),
                      decoder_input_ids=seq).logits[:, -1, s2:e2]
    total = first.log_softmax(-1).unsqueeze(2) + second.log_softmax(-1).view(n, c1, c2)  # [B, o₁, o₂]
    best = total.view(n, -1).argmax(dim=1)
    return torch.stack([first_codes[best // c2], second_codes[best % c2]], dim=1)


def assert_item_scores_follow(model: STREAMRec, batch, scores: Tensor, prefix: Tensor) -> None:
    """Every live score is log π(codes(item) | x, prefix) by ``transformers``' teacher forcing."""
    users, items = torch.isfinite(scores).nonzero(as_tuple=True)
    want = t5_item_logp(model, model.t5, batch[users], prefix[users], items)
    torch.testing.assert_close(scores[users, items], want, atol=1e-4, rtol=0)


def test_reasoning_decoding_modes(make_stream, tiny_batch, monkeypatch) -> None:
    """greedy ignores ``reasoning_beam``; beam of width 1 is greedy; a beam as wide as ℂ finds the most
    likely prefix; sampling at τ → 0 is greedy and at τ = 1 draws different prefixes. Every mode returns
    real items scored after the prefix it chose."""
    batch = tiny_batch[:24]

    def predict(seed: int = 0, **keys: Any) -> tuple[STREAMRec, Tensor, list[Tensor]]:
        model, _ = make_stream(**keys)
        model.set_stage("sft")
        torch.manual_seed(seed)  # after the build, which seeds too
        scores, fed = predict_and_record(model, batch, monkeypatch)
        assert_scores_are_real_items(model, scores, 24)
        return model, scores, fed

    n_users, n_codes = 24, M * 16
    model, greedy, fed = predict(reasoning_decoding="greedy", reasoning_beam=1)
    greedy_think = torch.cat(fed[1:3], dim=1)  # the l = 2 reasoning tokens
    assert_item_scores_follow(model, batch, greedy, greedy_think)
    assert torch.equal(predict(reasoning_decoding="greedy", reasoning_beam=7)[1], greedy)
    _, beam1, fed = predict(reasoning_decoding="beam", reasoning_beam=1)
    assert torch.equal(torch.cat(fed[1:3], dim=1), greedy_think)
    torch.testing.assert_close(beam1, greedy, atol=1e-5, rtol=0)

    model, wide, fed = predict(reasoning_decoding="beam", reasoning_beam=n_codes)
    best = best_two_token_prefix_by_hand(model, batch)
    assert fed[2].view(n_users, n_codes)[:, 0].tolist() == best[:, 1].tolist()
    assert_item_scores_follow(model, batch, wide, best)

    _, _, fed = predict(reasoning_decoding="sample", sample_temperature=1e-6)
    assert torch.equal(torch.cat(fed[1:3], dim=1), greedy_think)
    model, sampled, fed_a = predict(seed=0, reasoning_decoding="sample")
    think_a = torch.cat(fed_a[1:3], dim=1)
    assert_item_scores_follow(model, batch, sampled, think_a)
    _, _, fed_b = predict(seed=1, reasoning_decoding="sample")
    assert not torch.equal(think_a, torch.cat(fed_b[1:3], dim=1)), "sampling at τ = 1 should vary"
    assert ((think_a >= FIRST_CODE) & (think_a < FIRST_CODE + n_codes)).all()


# ---- 6. what GRPO needs from the policy --------------------------------------------------------------
G = 3  # odd and ≠ B, so a [G, B] / [B, G] mix-up shows


@pytest.fixture(scope="module")
def rl_setup(make_stream, train_rows) -> tuple[STREAMRec, GRPOConfig, Interaction]:
    model, config = make_stream(rl_group_size=G)
    model.set_stage("rl")
    model.set_reference(perturbed(model, seed=3))
    return model, GRPOConfig.from_config(config), train_rows[:16]


@pytest.mark.parametrize("decoding", ["trie", "level", "free"])
def test_rollout_tokens_and_mean_state(rl_setup, decoding: str) -> None:
    model, _, batch = rl_setup
    enc, mask = model.encode(batch)
    torch.manual_seed(0)
    tokens, mean_state = model.rollout(enc, mask, G, item_decoding=decoding)
    constrained = decoding == "trie"
    n, l, k = batch[model.ITEM_SEQ].shape[0] * G, model.n_reasoning, model.codebook_size
    assert tokens.shape == (n, l + M) and mean_state.shape == (n, model.d_model)
    assert ((tokens >= FIRST_CODE) & (tokens < FIRST_CODE + M * k)).all(), "everything is sampled from ℂ"
    items = model.trie.lookup(tokens_to_codes(tokens[:, l:], codebook_size=k))  # 0 = no such item
    if constrained:
        assert (items > 0).all(), "with the trie every rollout ends on a real item"
    else:
        assert (items == 0).any(), "free item tokens must be able to miss (the format reward's case)"
    level = (tokens[:, l:] - FIRST_CODE) // k  # [n, m] the level each item token belongs to
    on_level = (level == torch.arange(M)).all(dim=1)
    assert on_level.all() if decoding != "free" else not on_level.all(), "level decoding keeps tokens on their level"
    # the mean state is the mean of the decoder states that produced the l + m tokens
    hidden = model.decode_hidden(model.t5.decoder, tokens, enc.repeat_interleave(G, 0), mask.repeat_interleave(G, 0))
    torch.testing.assert_close(mean_state, hidden.mean(dim=1), atol=1e-5, rtol=1e-5)


def test_beam_rollouts_are_the_policys_ranked_list(rl_setup) -> None:
    """``rl_rollout: beam``: G distinct real (trace, item) pairs per user, best first by log π(trace, item)."""
    model, cfg, batch = rl_setup
    enc, mask = model.encode(batch)
    tokens, mean_state = model.beam_rollout(enc, mask, G)
    b, l, k = batch[model.ITEM_SEQ].shape[0], model.n_reasoning, model.codebook_size
    assert l > 0 and tokens.shape == (b * G, l + M) and mean_state.shape == (b * G, model.d_model)
    items = model.trie.lookup(tokens_to_codes(tokens[:, l:], codebook_size=k))
    assert (items > 0).all(), "every beam rollout is a real item"
    assert all(len({tuple(t) for t in user}) == G for user in tokens.view(b, G, -1).tolist()), "no pair twice"
    enc_n, mask_n = enc.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)

    def ranked_score(seqs: torch.Tensor) -> torch.Tensor:  # joint decoding's key: trace over its step's codes, item over V
        with torch.no_grad():
            logits = model.logits(model.decode_hidden(model.t5.decoder, seqs, enc_n, mask_n)).float()
        for step in range(l):
            model._mask_to_step_codes(logits[:, step], step)
        return F.log_softmax(logits, dim=-1).gather(2, seqs.unsqueeze(-1)).squeeze(-1).sum(dim=1).view(b, G)

    score = ranked_score(tokens)
    _, searched, _, _ = model._trace_item_beam(model.t5.decoder, enc, mask, l, max(G, model.beam_size))
    torch.testing.assert_close(score, searched[:, :G], atol=1e-4, rtol=0)  # each item after the trace it came from
    with torch.no_grad():
        hidden = model.decode_hidden(model.t5.decoder, tokens, enc_n, mask_n)
    assert (score[:, :-1] >= score[:, 1:] - 1e-4).all(), "best first"
    torch.manual_seed(0)
    sampled = model.rollout(enc, mask, G, item_decoding="trie")[0]
    assert (score[:, 0] >= ranked_score(sampled).max(dim=1).values - 1e-4).float().mean() > 0.5, \
        "the head of the list beats the best of G samples for most users"
    torch.testing.assert_close(mean_state, hidden.mean(dim=1), atol=1e-5, rtol=1e-5)
    _, advantages, rewards = rollout_rewards(model, batch, dataclasses.replace(cfg, rollout="beam"))
    assert (rewards["format"] == 0).all()
    torch.testing.assert_close(advantages.view(b, G).mean(dim=1), torch.zeros(b), atol=1e-5, rtol=0)


def test_candidate_logp_equals_teacher_forced_item_logp(rl_setup) -> None:
    model, _, batch = rl_setup
    enc, mask = model.encode(batch)
    torch.manual_seed(0)
    think = model.rollout(enc, mask, G)[0][:, : model.n_reasoning]  # [B·G, l]
    target = batch[model.POS_ITEM_ID].repeat_interleave(G)
    candidates = torch.cat([target.unsqueeze(1), model.neighbours[target]], dim=1)  # [B·G, 6]
    got = model.candidate_logp(enc, mask, think, candidates)
    enc_n, mask_n = enc.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)
    with torch.no_grad():
        want = torch.stack([model.item_logp(model.t5.decoder, think, candidates[:, c], enc_n, mask_n)
                            for c in range(candidates.shape[1])], dim=1)
    assert got.shape == candidates.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_rollout_rewards_and_group_advantages(rl_setup) -> None:
    model, cfg, batch = rl_setup
    b, l, k = batch[model.ITEM_SEQ].shape[0], model.n_reasoning, model.codebook_size
    for decoding in ("free", "level", "trie"):
        constrained = decoding == "trie"
        torch.manual_seed(0)
        tokens, advantages, rewards = rollout_rewards(model, batch, dataclasses.replace(cfg, item_decoding=decoding))
        assert tokens.shape == (b * G, l + M) and advantages.shape == (b * G,)
        assert set(rewards) == {*REWARD_NAMES, "total"}
        assert all(r.shape == (b * G,) and torch.isfinite(r).all() for r in rewards.values())
        torch.testing.assert_close(rewards["total"], sum(cfg.weights[n] * rewards[n] for n in REWARD_NAMES))
        torch.testing.assert_close(advantages.view(b, G).mean(dim=1), torch.zeros(b), atol=1e-5, rtol=0)
        assert advantages.abs().max() > 0.1
        valid = model.trie.lookup(tokens_to_codes(tokens[:, l:], codebook_size=k)) > 0
        assert rewards["format"].tolist() == torch.where(valid, 0.0, -1.0).tolist()
        if constrained:
            assert valid.all()
        matched = rewards["exact_match"]
        assert ((matched >= 0) & (matched <= M) & (matched == matched.round())).all()


def test_rollout_advantages_per_reward(rl_setup) -> None:
    """``rl_advantage: per_reward``: the advantage is the weighted sum of each reward's group z-score."""
    model, cfg, batch = rl_setup
    b = batch[model.ITEM_SEQ].shape[0]
    torch.manual_seed(0)
    _, advantages, rewards = rollout_rewards(model, batch, dataclasses.replace(cfg, advantage="per_reward"))
    want = sum(cfg.weights[n] * group_advantages(rewards[n].double().view(b, G)) for n in REWARD_NAMES)
    torch.testing.assert_close(advantages.double(), want.view(-1), atol=1e-5, rtol=0)
    torch.manual_seed(0)
    _, total_adv, _ = rollout_rewards(model, batch, cfg)
    assert not torch.allclose(advantages, total_adv, atol=1e-3), "per_reward differs from the paper's total"


def test_rollout_advantages_split_credit(rl_setup) -> None:
    """``rl_credit: split``: reasoning tokens carry the trace rewards' advantage, item tokens the item rewards'."""
    from recbole_streamrec.trainer.grpo import ITEM_REWARDS, TRACE_REWARDS
    model, cfg, batch = rl_setup
    b, l = batch[model.ITEM_SEQ].shape[0], model.n_reasoning
    torch.manual_seed(0)
    _, advantages, rewards = rollout_rewards(model, batch, dataclasses.replace(cfg, credit="split"))
    assert advantages.shape == (b * G, l + M)

    def adv(names):
        total = sum(cfg.weights[n] * rewards[n] for n in names).view(b, G)
        return group_advantages(total).view(-1, 1)

    torch.testing.assert_close(advantages[:, :l], adv(TRACE_REWARDS).expand(-1, l), atol=1e-5, rtol=0)
    torch.testing.assert_close(advantages[:, l:], adv(ITEM_REWARDS).expand(-1, M), atol=1e-5, rtol=0)
    assert not torch.allclose(advantages[:, 0], advantages[:, -1], atol=1e-3)


def test_grpo_loss_on_batch_trains_the_policy_only(rl_setup) -> None:
    """Gradients reach the policy; neither the KL anchor (a copy left trainable, to catch a leak) nor π_ref
    gets any."""
    model, cfg, batch = rl_setup
    anchor = perturbed(model, seed=4, scale=0.01)
    try:
        torch.manual_seed(0)
        loss, stats = grpo_loss_on_batch(model, anchor, batch, cfg)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        assert all(grads[n] is not None for n in grads if n.startswith(("t5.encoder.block", "t5.decoder.block")))
        assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
        assert all(p.grad is None for p in anchor.parameters())
        assert all(p.grad is None for p in model._reference.parameters())
        assert stats["ratio"] == pytest.approx(1.0) and stats["kl"] > 0
        assert {"clip_frac", *(f"reward_{n}" for n in (*REWARD_NAMES, "total"))} <= set(stats)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_joint_decoding_is_the_marginal_over_traces(make_stream, tiny_batch, monkeypatch) -> None:
    """``joint`` with every trace and every item kept scores item i as log Σ_o π(o | x) π(i | x, o), by hand
    from ``transformers``' forward; with one trace it ranks like greedy (scores shifted by log π(trace))."""
    batch = tiny_batch[:6]
    model, _ = make_stream(reasoning_steps=1, reasoning_decoding="joint", reasoning_beam=M * 16,
                           beam_size=M * 16 * N_ITEMS)
    first_code, end = level_codes(model, 0)  # the one reasoning token's codes
    n_codes = end - first_code
    model.set_stage("sft")
    with torch.no_grad():  # after the build (a cache miss trains the tokenizer)
        scores = model.full_sort_predict(batch)  # [B, n_items]
        ids, mask = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        start = torch.full((ids.shape[0], 1), PAD, dtype=torch.long)
        trace_logp = model.t5(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits[:, -1, first_code:end]
        trace_logp = trace_logp.float().log_softmax(-1)  # [B, n_codes]: softmax over the step's codes
        items = torch.arange(1, N_ITEMS)
        by_hand = torch.full((ids.shape[0], N_ITEMS), float("-inf"))
        for b in range(ids.shape[0]):
            rows = batch[torch.full((n_codes * items.numel(),), b)]
            traces = (first_code + torch.arange(n_codes)).repeat_interleave(items.numel()).unsqueeze(1)
            logp = t5_item_logp(model, model.t5, rows, traces, items.repeat(n_codes)).view(n_codes, -1)
            by_hand[b, 1:] = torch.logsumexp(trace_logp[b].unsqueeze(1) + logp, dim=0)
        torch.testing.assert_close(scores, by_hand, atol=1e-4, rtol=0)

    greedy_model, _ = make_stream(reasoning_steps=1, reasoning_decoding="greedy")
    greedy_model.set_stage("sft")
    greedy = greedy_model.full_sort_predict(batch)
    one, _ = make_stream(reasoning_steps=1, reasoning_decoding="joint", reasoning_beam=1)
    one.set_stage("sft")
    joint = one.full_sort_predict(batch)
    assert torch.equal(torch.isfinite(joint), torch.isfinite(greedy)), "one trace: the same top-k items"
    shift = (joint - greedy).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    live = torch.isfinite(greedy)
    for b in range(shift.shape[0]):
        assert torch.allclose(shift[b][live[b]], shift[b][live[b]][0], atol=1e-4), "a constant log π(trace) shift"
        assert shift[b][live[b]][0] < 0


def test_joint_beam_returns_real_items_once_each(make_stream, tiny_batch) -> None:
    """``joint``'s beam of (trace, item) pairs becomes one score per real item: an item reached by several
    traces is counted once (at most ``beam_size`` items, never the padding id), scores are log-probabilities."""
    batch = tiny_batch[:24]
    model, _ = make_stream(reasoning_decoding="joint", reasoning_beam=8)
    model.set_stage("sft")
    items, scores = model.generate_items(batch)
    live = torch.isfinite(scores)
    assert items.shape == (24, model.beam_size) and live[:, 0].all()
    assert (items[live] > 0).all() and (scores[live] <= 0).all()
    for row, keep in zip(items, live):
        assert row[keep].unique().numel() == int(keep.sum()), "an item appears once in the ranked list"
    assert (scores[:, :-1] >= scores[:, 1:]).all(), "best first"


def test_oracle_decoding_scores_items_after_the_annotated_trace(make_stream, tiny_batch) -> None:
    """``oracle``: the trace is the annotation of each row's own target; items are scored after it."""
    batch = tiny_batch[:12]
    model, _ = make_stream(reasoning_decoding="oracle")
    model.set_stage("sft")
    with torch.no_grad():
        think = model.annotate(batch)
        scores = model.full_sort_predict(batch)
    assert_scores_are_real_items(model, scores, 12)
    assert_item_scores_follow(model, batch, scores, think)


# ---- trace_separator: [start, trace, start, item] -----------------------------------------------------
def test_the_separator_is_fed_between_trace_and_item_and_items_are_scored_after_it(make_stream, tiny_batch,
                                                                                   monkeypatch) -> None:
    """Decoder calls: start, l greedy reasoning tokens, the separator (the start token again), then the item
    beam; every score is log π(codes(item) | x, [trace, start]) by ``transformers``' teacher forcing."""
    batch = tiny_batch[:12]
    model, _ = make_stream(trace_separator=True)
    model.set_stage("sft")
    scores, fed = predict_and_record(model, batch, monkeypatch)
    l = model.n_reasoning  # noqa: E741
    assert len(fed) == 1 + l + 1 + (M - 1)
    assert fed[1 + l].tolist() == [[PAD]] * 12, "the separator is the start token"
    think = torch.cat(fed[1 : 1 + l], dim=1)
    assert think.tolist() == greedy_prefix_by_hand(model, batch, l).tolist(), "the trace itself is unchanged"
    separated = torch.cat([think, torch.full((12, 1), PAD)], dim=1)
    assert_scores_are_real_items(model, scores, 12)
    assert_item_scores_follow(model, batch, scores, separated)
    plain, _ = make_stream()
    plain.set_stage("sft")
    assert not torch.allclose(plain.full_sort_predict(batch).nan_to_num(neginf=0), scores.nan_to_num(neginf=0)), \
        "the separator changes what the item follows"


def test_sft_loss_with_the_separator_ignores_it_as_a_label(make_stream, train_rows) -> None:
    """L_SFT is the mean cross-entropy of the l reasoning tokens, the m codes and EOS read after
    ``[start, trace, start]``; the separator itself is no label."""
    model, _ = make_stream(trace_separator=True, dpo_weight=0.0)
    model.set_stage("sft")
    batch = with_reasoning(model, train_rows[:16])
    think, items = batch[model.REASONING_FIELD], batch[model.POS_ITEM_ID]
    ids, mask = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    labels = torch.cat([think, torch.full((16, 1), PAD), model.item_labels(items)], dim=1)
    with torch.no_grad():
        logits = model.t5(input_ids=ids, attention_mask=mask, decoder_input_ids=model.shift_right(labels)).logits
        loss = model.sft_loss(batch)[0]
    kept = torch.cat([torch.arange(model.n_reasoning), torch.arange(model.n_reasoning + 1, labels.shape[1])])
    want = F.cross_entropy(logits[:, kept].float().flatten(0, 1), labels[:, kept].flatten())
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=0)


def test_rollouts_with_the_separator_score_as_they_were_decoded(make_stream, train_rows) -> None:
    """A rollout has l + m drawn tokens (the separator is fed, not drawn): its per-token log-probabilities by
    teacher forcing sum to the trie beam's score, its item part is ``candidate_logp``'s, and its mean state
    is over all l + 1 + m decoder states."""
    model, _ = make_stream(trace_separator=True, rl_group_size=G)
    model.set_stage("rl")
    batch = train_rows[:8]
    enc, mask = model.encode(batch)
    l, b = model.n_reasoning, 8  # noqa: E741
    tokens, mean_state = model.beam_rollout(enc, mask, G)
    assert tokens.shape == (b * G, l + M)
    enc_n, mask_n = enc.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)
    with torch.no_grad():
        logp = model.rollout_logp(enc_n, mask_n, tokens)  # [B·G, l + m]
        labels = torch.cat([tokens[:, :l], torch.full((b * G, 1), PAD), tokens[:, l:]], dim=1)
        hidden = model.decode_hidden(model.t5.decoder, labels, enc_n, mask_n)
        logits = model.logits(hidden).float()
    for step in range(l):
        model._mask_to_step_codes(logits[:, step], step)
    ranked = F.log_softmax(logits, dim=-1).gather(2, labels.unsqueeze(-1)).squeeze(-1)
    ranked = torch.cat([ranked[:, :l], ranked[:, l + 1 :]], dim=1).sum(dim=1).view(b, G)
    _, searched, _, _ = model._trace_item_beam(model.t5.decoder, enc, mask, l, max(G, model.beam_size))
    torch.testing.assert_close(ranked, searched[:, :G], atol=1e-4, rtol=0)
    assert logp.shape == tokens.shape
    item = model.trie.lookup(tokens_to_codes(tokens[:, l:], codebook_size=model.codebook_size))
    want = model.candidate_logp(enc, mask, tokens[:, :l], item.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(logp[:, l:].sum(dim=1), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean_state, hidden.mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    sampled, sampled_state = model.rollout(enc, mask, G, item_decoding="level")
    with torch.no_grad():
        labels = torch.cat([sampled[:, :l], torch.full((b * G, 1), PAD), sampled[:, l:]], dim=1)
        hidden = model.decode_hidden(model.t5.decoder, labels, enc_n, mask_n)
    torch.testing.assert_close(sampled_state, hidden.mean(dim=1), atol=1e-5, rtol=1e-5)
