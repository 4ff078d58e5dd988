"""STREAM-Rec reasons (issue 12): informative traces from the first annotation, a hand-over that keeps
stage 1, GRPO that moves, and the explain command — on the tiny dataset of ``conftest.py``.

Each test here fails on the implementation before issue 12: untrained residual heads collapsed the first
annotation onto a handful of small-norm codes, free rollout item tokens were almost never an item, and one
update per rollout batch kept the GRPO ratio at exactly 1.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer

from recbole_streamrec import explain
from recbole_streamrec.data.semantic_ids import semantic_ids_of
from recbole_streamrec.model.streamrec import STREAMRec, trace_statistics
from recbole_streamrec.tokenizer.codes import FIRST_CODE, tokens_to_codes
from recbole_streamrec.trainer import STREAMRecTrainer
from recbole_streamrec.trainer.grpo import GRPOConfig, grpo_loss_on_rollouts, make_rollouts

from conftest import DATASET
from test_streamrec import M, make_stream, perturbed, train_rows  # noqa: F401  (fixtures)
from test_bench_table2 import bench_script


def annotate_all(model: STREAMRec, feat) -> tuple[torch.Tensor, dict]:
    """Annotation of every row and its :func:`trace_statistics`."""
    tokens, dist = model.annotate(feat, return_distances=True)
    return tokens, trace_statistics(tokens, model.target_tokens(feat[model.POS_ITEM_ID]), dist)


def sft_steps(model: STREAMRec, feat, steps: int, *, lr: float = 3e-3, seed: int = 0) -> STREAMRec:
    """``steps`` Adam steps of ``sum(sft_loss)`` on batches of 64 rows of one annotation of ``feat``
    (kept as ``model.trained_rows``)."""
    model.eval()
    rows = Interaction(dict(feat.interaction))
    rows[model.REASONING_FIELD] = (model.annotate(feat) if model.reasoning_trace == "annotated"
                                   else model.constant_trace(len(feat), feat[model.ITEM_SEQ].device))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the DPO negatives
    for _ in range(steps):
        batch = rows[torch.randperm(len(rows), generator=gen)[:64]]
        optimizer.zero_grad()
        sum(model.sft_loss(batch)).backward()
        optimizer.step()
    model.trained_rows = rows
    return model.eval()


def sft_model(make_stream, **keys: Any) -> STREAMRec:
    model, _ = make_stream(**keys)
    model.set_stage("sft")
    model.set_reference(copy.deepcopy(model))
    return model


@pytest.fixture(scope="module")
def feat(tiny_data):
    return tiny_data[2]._dataset.inter_feat


@pytest.fixture(scope="module")
def trained(make_stream, feat) -> STREAMRec:
    """l = 3, 30 SFT steps from the default initialisation."""
    return sft_steps(sft_model(make_stream, reasoning_steps=3), feat, 30)


# ---- 1. informative traces from the first annotation -------------------------------------------------
def test_first_annotation_is_diverse_and_points_at_the_target(make_stream, feat) -> None:
    """At default initialisation (no training): many codes, about one trace per target item, the first
    token usually one of the target's own level-0/1 codes, and ‖t − s_i‖ falling with i (SPEC §5b)."""
    model, _ = make_stream(reasoning_steps=3)
    _, stats = annotate_all(model, feat)
    assert stats["distinct_traces"] >= 0.5 * stats["distinct_targets"], stats
    assert stats["distinct_tokens"] >= 0.25 * M * model.codebook_size, stats
    assert stats["first_in_target_l01"] >= 0.5, stats
    dist = stats["distance"]
    assert all(a > b for a, b in zip(dist, dist[1:])), stats


def test_cyclic_levels_give_coarse_to_fine_traces(make_stream, feat) -> None:
    """``reasoning_levels: cyclic`` (default): token i is a level-(i mod m) code, and at the first annotation
    the first token is the target's own level-0 code far more often than when the argmin searches all of ℂ
    (which takes the largest residual component first, usually a fine level's code)."""
    shares = {}
    for levels in ("cyclic", "all"):
        model, _ = make_stream(reasoning_steps=3, reasoning_levels=levels)
        K = model.codebook_size
        tokens, _ = annotate_all(model, feat)
        if levels == "cyclic":
            level = (tokens - FIRST_CODE) // K  # [n, l]
            assert (level == torch.arange(3).expand_as(level) % M).all()
        target = model.target_tokens(feat[model.POS_ITEM_ID])  # [n, m]
        shares[levels] = (tokens[:, 0] == target[:, 0]).float().mean().item()
    # the tiny semantic IDs differ with the CPU's kernels (0.77 on a Xeon with AMX, above 0.8 on an AMD EPYC): the
    # margin over "all" is what the option is for
    assert shares["cyclic"] >= 0.6 and shares["cyclic"] > shares["all"] + 0.3, shares


def test_plain_heads_reproduce_the_collapse(make_stream, feat) -> None:
    """The paper-literal heads (``residual_head``/``state_head: plain``) stay available, and show why
    they are not the default: the first annotation uses few traces."""
    model, _ = make_stream(reasoning_steps=3, residual_head="plain", state_head="plain")
    _, stats = annotate_all(model, feat)
    assert stats["distinct_traces"] < 0.5 * stats["distinct_targets"], stats


def collaborative(make_stream, **keys: Any) -> tuple[STREAMRec, Any]:
    return make_stream(reasoning_trace="collaborative", trace_vector_source="cooccurrence", reasoning_steps=2,
                       **keys)


def test_collaborative_trace_is_the_targets_second_id_on_its_own_tokens(make_stream, feat, tiny_data) -> None:
    """``reasoning_trace: collaborative``: the trace of a row is its target's RQ-VAE codes over the second view's
    vectors (here co-occurrence, the semantic IDs being SASRec's), token j among level j's K tokens after ℂ."""
    model, config = collaborative(make_stream)
    K, V = model.codebook_size, model.t5.config.vocab_size
    assert V == FIRST_CODE + (M + 2) * K
    tokens, stats = annotate_all(model, feat)
    second = torch.from_numpy(semantic_ids_of(config, tiny_data[2]._dataset, "cooccurrence"))
    targets = feat[model.POS_ITEM_ID]
    level = torch.arange(2)
    torch.testing.assert_close(tokens, FIRST_CODE + (M + level) * K + second[targets, :2])
    assert not torch.equal(second[:, :2], model.item_codes[:, :2]), "the second view gives other codes"
    for step in range(2):
        start, end = model.step_codes(step)
        assert (start, end) == (FIRST_CODE + (M + step) * K, FIRST_CODE + (M + step + 1) * K)
    assert stats["spells_target"] == 0.0 and stats["distinct_traces"] > 1, stats
    with pytest.raises(ValueError, match="reasoning_steps"):
        collaborative(make_stream, rqvae_levels=1)


def test_collaborative_trace_starts_from_tiger_and_thinks_on_its_tokens(make_stream, tiny_batch, feat) -> None:
    """A one-step model's weights load (its token table's rows first, the trace's rows keep their
    initialisation); SFT has no L_Quant/L_State to train; inference thinks on the trace tokens and
    returns real items."""
    plain, _ = make_stream(reasoning_steps=2)
    tiger_state = {k: v for k, v in plain.state_dict().items() if not k.startswith(("direct_decoder.", "mlp_"))}
    model, _ = collaborative(make_stream, reasoning_decoding="joint", reasoning_beam=3)
    own = model.state_dict()
    state = model.state_from_tiger(tiger_state)
    V = plain.t5.config.vocab_size
    torch.testing.assert_close(state["t5.shared.weight"][:V], tiger_state["t5.shared.weight"])
    torch.testing.assert_close(state["t5.shared.weight"][V:], own["t5.shared.weight"][V:])
    model.load_state_dict(state)
    model.set_stage("sft")
    model.set_reference(copy.deepcopy(model))
    rows = Interaction(dict(feat[torch.arange(32)].interaction))
    rows[model.REASONING_FIELD] = model.annotate(rows)
    _, _, quant, state_loss = model.sft_loss(rows)
    assert quant.item() == 0.0 and state_loss.item() == 0.0
    think, items, scores = model.recommend(tiny_batch, k=5)
    K = model.codebook_size
    assert ((think - FIRST_CODE) // K == M + torch.arange(2)).all(), think
    assert (items > 0).all() and torch.isfinite(scores).all()
    label, pointed = explain.token_items(model, int(think[0, 1]))
    assert label.startswith("T1:c")
    assert (model.trace_tokens[pointed, 1] == think[0, 1]).all()
    # an untrained model may think of a cluster no item is in (which one depends on the CPU's kernels), so the
    # token that must point at items is one real items use: the trace of item 1
    token = model.trace_tokens[1, 1]
    label, pointed = explain.token_items(model, int(token))
    assert label.startswith("T1:c") and 1 in pointed
    assert (model.trace_tokens[pointed, 1] == token).all()


def test_trace_tokens_start_at_their_items_mean_code_embedding(make_stream) -> None:
    """``init_trace_tokens`` (``trace_token_init: members``): a trace token's row of E is the mean t of the
    items whose second ID has it; the items' own code rows do not move."""
    model, _ = collaborative(make_stream)
    before = model.embeddings.detach().clone()
    model.init_trace_tokens()
    token = int(model.trace_tokens[1, 1])
    members = (model.trace_tokens[:, 1] == token).nonzero().squeeze(1)
    expected = before[model.item_tokens[members]].mean(dim=1).mean(dim=0)
    torch.testing.assert_close(model.embeddings[token], expected)
    first_trace = FIRST_CODE + M * model.codebook_size
    torch.testing.assert_close(model.embeddings[:first_trace], before[:first_trace])


def test_distance_to_the_target_falls_over_the_steps_after_sft(trained, feat) -> None:
    _, stats = annotate_all(trained, feat)
    dist = stats["distance"]
    assert all(a > b for a, b in zip(dist, dist[1:])), stats
    assert stats["distinct_traces"] >= 0.5 * stats["distinct_targets"], stats


def test_belief_start_quantises_the_gap_from_stage_ones_answer(make_stream, feat) -> None:
    """``trace_start: belief``: the state starts at π_ref's expected target representation b (a function of the
    history), so the first annotation quantises t − b instead of t, and SFT's states start there too."""
    rows = feat[:64]
    zero = sft_model(make_stream, reasoning_steps=3)
    belief = sft_model(make_stream, reasoning_steps=3, trace_start="belief")
    belief.load_state_dict(zero.state_dict())
    belief.set_reference(copy.deepcopy(belief))
    b = belief.belief(rows)
    assert b.abs().max() > 0
    t, _, _, s0, _ = next(belief.annotation_steps(rows))
    torch.testing.assert_close(s0, b)  # MLP_s is zero at initialisation
    assert next(zero.annotation_steps(rows))[3].abs().max() == 0
    assert (belief.annotate(rows) != zero.annotate(rows)).any()
    torch.testing.assert_close(belief.trace_origin(rows, t), b)
    annotated = Interaction(dict(rows.interaction))
    annotated[belief.REASONING_FIELD] = zero.annotate(rows)
    torch.manual_seed(0)
    state_zero = zero.sft_loss(annotated)[3]
    torch.manual_seed(0)
    assert not torch.isclose(belief.sft_loss(annotated)[3], state_zero)  # L_State sees s_i = b + …


def test_belief_start_needs_the_code_state_head(make_stream) -> None:
    with pytest.raises(ValueError, match="trace_start: belief needs state_head: codes"):
        make_stream(trace_start="belief", state_head="identity")


def test_quant_loss_leaves_the_token_table_alone_by_default(make_stream, feat) -> None:
    model = sft_model(make_stream)
    rows = Interaction(dict(feat[:64].interaction))
    rows[model.REASONING_FIELD] = model.annotate(rows)
    model.train()
    _, _, quant, _ = model.sft_loss(rows)
    quant.backward()
    assert model.t5.shared.weight.grad is None or model.t5.shared.weight.grad.abs().max() == 0
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.mlp_r.parameters())


def test_quant_loss_moves_the_states_only_when_asked(make_stream, feat) -> None:
    """``quant_update_state: false``: L_Quant trains MLP_r alone; MLP_s and the decoder get nothing from it."""
    grads = {}
    for moves in (True, False):
        model = sft_model(make_stream, quant_update_state=moves)
        with torch.no_grad():  # MLP_s starts at zero: give it an output so that its gradient can show
            model.mlp_s[2].weight.normal_(0, 0.1)
        rows = Interaction(dict(feat[:64].interaction))
        rows[model.REASONING_FIELD] = model.annotate(rows)
        model.train()
        model.sft_loss(rows)[2].backward()
        grads[moves] = max(p.grad.abs().max().item() if p.grad is not None else 0.0
                           for p in [*model.mlp_s.parameters(), *model.t5.decoder.parameters()])
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.mlp_r.parameters())
    assert grads[True] > 0 and grads[False] == 0, grads


@pytest.fixture(scope="module")
def state_decomposition():
    yield from bench_script("state_decomposition")


def test_state_decomposition_splits_the_distance_into_codes_and_mlp_s(state_decomposition, make_stream, trained,
                                                                        feat) -> None:
    """bench/state_decomposition.py: at initialisation MLP_s adds nothing (the distance is the codes' part);
    after SFT the two parts and the logged distance agree with the annotation's own ``‖t − s_i‖``."""
    bench = state_decomposition
    fresh, _ = make_stream(reasoning_steps=3)
    table = bench.decompose(fresh.eval(), [feat])  # [l + 1, 5]
    assert table.shape == (4, len(bench.COLUMNS))
    assert (table[:, 2] == 0).all() and torch.allclose(table[:, 0], table[:, 1])
    table = bench.decompose(trained, [feat])
    _, dist = trained.annotate(feat, return_distances=True)
    torch.testing.assert_close(table[:, 0], dist.mean(dim=0), rtol=1e-4, atol=1e-4)
    assert (table[1:, 2] > 0).all()


@pytest.fixture(scope="module")
def position_nll():
    yield from bench_script("position_nll")


def test_position_nll_reads_the_trace_then_the_item_without_the_separator(position_nll, make_stream, feat) -> None:
    """bench/position_nll.py: at the hand-over the trace columns are the direct decoder's NLL of the same tokens
    (the policy *is* that decoder), the item columns sum to −log π(item | trace), and the separator is no column."""
    model, _ = make_stream(reasoning_steps=2, trace_separator=True)
    model.init_reasoning_from_direct()
    model.set_stage("sft")
    rows = Interaction(dict(feat[:64].interaction))
    rows[model.REASONING_FIELD] = think = model.annotate(rows)
    nll = position_nll.position_nll(model, [rows])
    assert nll.shape == (2 + M + 1,)
    enc, mask = model.encode(rows)
    logits = model.logits(model.decode_hidden(model.direct_decoder, think, enc, mask)).float()
    direct = -logits.log_softmax(-1).gather(-1, think.unsqueeze(-1)).squeeze(-1).mean(0)
    torch.testing.assert_close(nll[:2], direct)
    item = -model.item_logp(model.t5.decoder, think, rows[model.POS_ITEM_ID], enc, mask).mean()
    torch.testing.assert_close(nll[2 : 2 + M].sum(), item)
    # the top-10 count: padding items (0, a dead beam or a hole left by merged traces) do not count
    holes = torch.tensor([[3, 5, 0, 0, 7, 0, 0, 0, 0, 0, 9, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]])
    model.generate_items = lambda inter, beam: (holes, torch.zeros(holes.shape))
    assert position_nll.items_in_top(model, rows) == (3 + 10) / 2


def test_annotate_sorts_by_history_length_and_writes_back_in_row_order(make_stream, make_config, feat) -> None:
    model, config = make_stream(reasoning_steps=2, eval_batch_size=16)
    trainer = STREAMRecTrainer(config, model)
    rows = Interaction(dict(feat.interaction))
    trainer._annotate(types.SimpleNamespace(_dataset=types.SimpleNamespace(inter_feat=rows)))
    assert torch.equal(rows[model.REASONING_FIELD], model.annotate(feat))
    assert {"distinct_tokens", "distinct_traces", "first_in_target_l01", "distance"} <= set(trainer.annotation_stats)
    assert len(trainer.annotation_stats["distance"]) == 3


def test_no_trace_annotates_nothing_and_a_constant_trace_spends_no_training_time_on_it(
        make_stream, make_config, feat, monkeypatch) -> None:
    """l = 0 writes empty traces without running the model; a constant trace's annotation (kept for its
    statistics) is not counted on the training clock, a learned trace's is."""
    model, config = make_stream(reasoning_steps=0)
    trainer = STREAMRecTrainer(config, model)
    monkeypatch.setattr(model, "annotate", lambda *a, **k: pytest.fail("l = 0 has nothing to annotate"))
    rows = Interaction(dict(feat.interaction))
    trainer._annotate(types.SimpleNamespace(_dataset=types.SimpleNamespace(inter_feat=rows)))
    assert rows[model.REASONING_FIELD].shape == (len(rows), 0)

    for trace, counted in (("annotated", True), ("constant", False)):
        model, config = make_stream(reasoning_steps=2, reasoning_trace=trace, sft_rounds=1)
        trainer = STREAMRecTrainer(config, model)
        trainer._begin_stage("sft")
        clock = []
        monkeypatch.setattr(trainer, "_annotate", lambda data: clock.append(trainer._clock_started is not None))
        monkeypatch.setattr(Trainer, "fit", lambda self, *a, **k: (self.best_valid_score, None))
        trainer._fit_sft(None, None, verbose=False, show_progress=False)
        assert clock == [counted], trace


def test_sft_attention_learning_rate_is_the_policy_self_attentions_alone(make_stream) -> None:
    """``sft_attention_learning_rate`` gives exactly the policy decoder's self-attention its own rate in SFT
    (the direct decoder's and every other weight keep ``sft_learning_rate``); stage 1 ignores it."""
    model, config = make_stream(reasoning_steps=2, sft_learning_rate=1e-4, sft_attention_learning_rate=3e-3)
    trainer = STREAMRecTrainer(config, model)
    names = {id(p): n for n, p in model.named_parameters()}
    trainer._begin_stage("sft")
    rates = {names[id(p)]: g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    own = {n for n, lr in rates.items() if lr == 3e-3}
    policy = {n for n in rates if n.startswith("t5.decoder.") and ".SelfAttention." in n}
    assert own == policy and any("relative_attention_bias" in n for n in own)
    assert {lr for n, lr in rates.items() if n not in own} == {1e-4}
    assert any(n.startswith("direct_decoder.") and ".SelfAttention." in n for n in rates)
    trainer._begin_stage("pretrain")
    assert {g["initial_lr"] for g in trainer.optimizer.param_groups} == {config["pt_learning_rate"]}


# ---- SFT uses the trace -------------------------------------------------------------------------------
@torch.no_grad()
def item_nll_given_trace(model: STREAMRec) -> float:
    """Mean −log π(codes(target) | x, trace) by teacher forcing, with the traces the model trained on."""
    rows = model.trained_rows
    think = rows[model.REASONING_FIELD]
    enc, mask = model.encode(rows)
    return -model.item_logp(model.t5.decoder, think, rows[model.POS_ITEM_ID], enc, mask).mean().item()


def test_sft_beats_a_constant_trace_when_the_target_needs_the_trace(make_stream, feat) -> None:
    """Every history is replaced by the same one item, so the encoder says nothing about the target: only
    the intermediate step (the annotated trace, an oracle description of the target) makes it predictable.
    Same model, same 150 steps: SFT on annotated traces must beat SFT on one constant trace by far."""
    seq, seq_len = make_stream()[0].ITEM_SEQ, make_stream()[0].ITEM_SEQ_LEN
    blind = Interaction(dict(feat.interaction))
    blind[seq] = torch.zeros_like(blind[seq])
    blind[seq][:, 0] = 1
    blind[seq_len] = torch.ones_like(blind[seq_len])
    nll = {}
    for trace in ("annotated", "constant"):
        model = sft_steps(sft_model(make_stream, reasoning_trace=trace), blind, 150)
        nll[trace] = item_nll_given_trace(model)
    assert nll["annotated"] < nll["constant"] - 1.0, nll  # nats per item (measured: 2.7 vs 4.9)


# ---- 2. the hand-over ---------------------------------------------------------------------------------
def test_reasoning_decoder_starts_from_the_direct_decoder(make_stream, tiny_batch) -> None:
    """After the hand-over, thinking for 0 steps is exactly the direct decoder evaluated as TIGER."""
    model, _ = make_stream(inference_reasoning_steps=0)
    model.set_stage("sft")
    model.direct_inference = True
    direct = model.full_sort_predict(tiny_batch)
    model.direct_inference = False
    assert not torch.equal(model.full_sort_predict(tiny_batch), direct)
    model.init_reasoning_from_direct()
    torch.testing.assert_close(model.full_sort_predict(tiny_batch), direct)


# ---- 3. GRPO that moves -------------------------------------------------------------------------------
def rl_ready(model: STREAMRec) -> STREAMRec:
    model.set_stage("rl")
    model.set_reference(perturbed(model, seed=3))
    return model


def test_level_restricted_rollouts_are_real_items_with_nonzero_probability(trained, feat) -> None:
    """After a few SFT steps, rollouts drawn among each level's codes land on real items (40 items among
    16⁴ code tuples), so the format reward varies inside groups; free decoding over ℂ mostly leaves the
    levels and almost never makes an item (the old inert case)."""
    model = copy.deepcopy(trained)
    model.set_reference(None)
    enc, mask = model.encode(feat[:64])
    share = {}
    for decoding in ("level", "free"):
        torch.manual_seed(0)
        tokens, _ = model.rollout(enc, mask, 8, item_decoding=decoding)
        items = model.trie.lookup(tokens_to_codes(tokens[:, model.n_reasoning :], codebook_size=model.codebook_size))
        valid = (items > 0).float().view(-1, 8)  # [B, G]
        share[decoding] = valid.mean().item()
        if decoding == "level":
            assert (valid.std(dim=1) > 0).any(), "the format reward must differ between rollouts of a user"
            level = (tokens[:, model.n_reasoning :] - FIRST_CODE) // model.codebook_size
            assert (level == torch.arange(M)).all()
    assert share["level"] >= 0.01 and share["level"] > 2 * share["free"], share


def test_two_iterations_move_the_ratio_and_the_clip(trained, feat) -> None:
    """Pass 1 on fresh rollouts has ratio 1 and no clipping; after one large step, pass 2 on the *same*
    rollouts (old log-probs fixed) sees the ratio move and the clip act. Reward statistics are logged."""
    model = rl_ready(copy.deepcopy(trained))
    cfg = GRPOConfig(group=4, batch_size=32, steps_per_epoch=1, temperature=1.0, item_decoding="level",
                     hard_negatives=5, clip_eps=0.2, kl_beta=0.04,
                     weights={n: 1.0 for n in ("format", "exact_match", "similarity", "thinking_likelihood",
                                               "thinking_ranking")}, iterations=2)
    batch = feat[:32]
    anchor = copy.deepcopy(model)
    anchor.set_reference(None)
    torch.manual_seed(0)
    rollouts = make_rollouts(model, anchor, batch, cfg)
    assert {"reward_format", "reward_format_std", "reward_total_std"} <= set(rollouts.stats)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, first = grpo_loss_on_rollouts(model, batch, rollouts, cfg)
    assert first["ratio"] == pytest.approx(1.0) and first["clip_frac"] == 0
    loss.backward()
    optimizer.step()
    _, second = grpo_loss_on_rollouts(model, batch, rollouts, cfg)
    assert second["clip_frac"] > 0 and second["ratio"] != pytest.approx(1.0), second


# ---- 6. explain -----------------------------------------------------------------------------------------
def test_explain_prints_history_reasoning_and_top10(trained, tiny_root, workdir, monkeypatch, capsys) -> None:
    path = tiny_root / "checkpoints" / "explain-test.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": "STREAMRec", "stage": "sft", "state_dict": trained.state_dict()}, path)
    from conftest import overrides

    keys = {**overrides(tiny_root, "STREAMRec"), "reasoning_steps": 3, "rl_hard_negatives": 5, "dpo_negative_pool": 3}
    argv = ["--checkpoint", str(path), "--users", "u01,u02", "--dataset", DATASET,
            *(f"--{k}={v}" for k, v in keys.items())]
    monkeypatch.setattr(sys, "argv", ["explain"])
    text = explain.main(argv)
    assert text.count("user u0") == 2 and text.count("reasoning (3 tokens)") == 2
    assert text.count("top-10") == 2 and " 10. " in text and "→" in text


# ---- the new pure functions, by hand -----------------------------------------------------------------
def test_info_nce_dot_is_the_raw_dot_product() -> None:
    import math

    from recbole_streamrec.model.losses import info_nce

    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    k = torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    # dot products: row 0 [3, 1] (positive 3), row 1 [0, 2] (positive 2)
    want = (-(3 - math.log(math.e**3 + math.e)) - (2 - math.log(1 + math.e**2))) / 2
    assert info_nce(q, k, temperature=1.0, similarity="dot").item() == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="similarity"):
        info_nce(q, k, similarity="l2")


def test_info_nce_distance_scores_negative_euclidean_distance() -> None:
    import math

    from recbole_streamrec.model.losses import info_nce

    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([[3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
    # distances: row 0 [5, 10] (its positive 5 is the nearer), row 1 [0, 5] (its positive 5, the other key at 0)
    want = ((5 + math.log(math.exp(-5) + math.exp(-10))) + (5 + math.log(1 + math.exp(-5)))) / 2
    loss = info_nce(q, k, temperature=1.0, similarity="distance")
    assert loss.item() == pytest.approx(want, abs=1e-12)
    loss.backward()  # descent moves row 1 towards its own key (6, 8), along +(3, 4): a length a cosine ignores
    assert (q.grad[1] < 0).all()
    assert info_nce(2 * q, 2 * k, temperature=2.0, similarity="distance").item() == pytest.approx(want, abs=1e-12)


def test_quantization_loss_without_codebook_update() -> None:
    from recbole_streamrec.model.losses import quantization_loss

    r = torch.tensor([[[1.0, 2.0]]], requires_grad=True)
    e = torch.tensor([[[0.0, 0.0]]], requires_grad=True)
    loss = quantization_loss(r, e, beta=0.25, update_codebook=False)
    assert loss.item() == pytest.approx(5.0 * 1.25)  # same value: ‖r − e‖² (1 + β)
    loss.backward()
    assert e.grad is None or e.grad.abs().max() == 0
    assert r.grad.tolist() == [[[0.5, 1.0]]]  # 2β(r − e)


def test_reward_statistics_hand_numbers() -> None:
    from recbole_streamrec.model.rewards import reward_statistics

    rewards = {"format": torch.tensor([0.0, -1.0, 0.0, 0.0]), "exact": torch.tensor([1.0, 3.0, 2.0, 2.0])}
    stats = reward_statistics(rewards, group=2)
    # groups [0, −1] and [0, 0]: std (Bessel) √0.5 and 0; [1, 3] and [2, 2]: √2 and 0
    assert stats["format_mean"] == pytest.approx(-0.25) and stats["format_std"] == pytest.approx(0.5**0.5 / 2)
    assert stats["exact_mean"] == pytest.approx(2.0) and stats["exact_std"] == pytest.approx(2**0.5 / 2)


def test_trace_statistics_hand_numbers() -> None:
    traces = torch.tensor([[5, 9], [5, 9], [7, 9]])
    targets = torch.tensor([[5, 20, 40, 60], [3, 21, 40, 60], [3, 7, 41, 60]])
    dist = torch.tensor([[3.0, 2.0, 1.0], [5.0, 4.0, 3.0], [4.0, 3.0, 2.0]])
    stats = trace_statistics(traces, targets, dist)
    assert stats["distinct_tokens"] == 3 and stats["distinct_traces"] == 2 and stats["distinct_targets"] == 3
    assert stats["first_in_target_l01"] == pytest.approx(2 / 3)  # rows 0 (level 0) and 2 (level 1)
    assert stats["spells_target"] == 0.0
    spelled = trace_statistics(torch.tensor([[5, 20, 40], [3, 21, 41]]), targets[:2], dist[:2, :1].repeat(1, 4))
    assert spelled["spells_target"] == pytest.approx(1 / 2)  # row 0 is the target's first three codes
    assert stats["distance"] == [4.0, 3.0, 2.0]


# ---- trace_gate and item_beam: distinct (the hand-over decodes as stage 1) ----------------------------
def gated(make_stream, gate: float, **keys: Any) -> STREAMRec:
    """A tiny STREAM-Rec after the hand-over (policy = direct decoder), stage sft, with ``trace_gate: gate``."""
    model, _ = make_stream(trace_separator=True, trace_gate=gate, **keys)
    model.init_reasoning_from_direct()
    model.set_stage("sft")
    return model


def test_a_closed_trace_gate_scores_the_item_as_the_direct_decoder(make_stream, feat) -> None:
    """Closed (a bias of −1e4), the item after any trace is stage 1's direct decoder's prediction, by teacher
    forcing and in the cached decoder; at 0 the gate changes nothing; half open it differs from both."""
    rows = feat[:24]
    logp = {}
    for gate in (-1e4, -2.0, 0.0):
        model = gated(make_stream, gate)
        items = rows[model.POS_ITEM_ID]
        torch.manual_seed(0)
        enc, mask = model.encode(rows)
        think = torch.randint(FIRST_CODE, FIRST_CODE + model.codebook_size, (24, model.n_reasoning))
        with torch.no_grad():
            forced = model.item_logp(model.t5.decoder, think, items, enc, mask)
            cached = model.candidate_logp(enc, mask, think, items.unsqueeze(1)).squeeze(1)
            direct = model.item_logp(model.direct_decoder, think[:, :0], items, enc, mask)
        torch.testing.assert_close(cached, forced, atol=1e-4, rtol=0)  # the cache's gate is the mask's
        logp[gate] = forced
    torch.testing.assert_close(logp[-1e4], direct, atol=1e-4, rtol=0)
    plain, _ = make_stream(trace_separator=True)
    plain.init_reasoning_from_direct()
    plain.set_stage("sft")
    with torch.no_grad():
        ungated = plain.item_logp(plain.t5.decoder, think, items, *plain.encode(rows))
    torch.testing.assert_close(logp[0.0], ungated, atol=1e-5, rtol=0)
    assert (logp[-2.0] - logp[-1e4]).abs().max() > 1e-3 and (logp[-2.0] - logp[0.0]).abs().max() > 1e-3


def test_joint_decoding_with_a_closed_gate_and_distinct_items_ranks_as_the_direct_decoder(make_stream, tiny_batch) -> None:
    """At the hand-over (gate closed) joint decoding over 4 traces with ``item_beam: distinct`` returns stage 1's
    beam: the same items in the same order, each scored by its own log-probability plus the best trace's. With
    ``item_beam: pairs`` the item beam spends beams on one item reached through several traces."""
    batch = tiny_batch[:12]
    model = gated(make_stream, -1e4, reasoning_decoding="joint", reasoning_beam=4, item_beam="distinct")
    with torch.no_grad():
        items, scores = model.generate_items(batch)
        model.direct_inference = True
        want, want_scores = model.generate_items(batch)
        model.direct_inference = False
        enc, mask = model.encode(batch)
        pairs = model._trace_item_beam(model.t5.decoder, enc, mask, model.n_reasoning, model.beam_size)[0]
        model.item_beam = "pairs"
        repeated = model._trace_item_beam(model.t5.decoder, enc, mask, model.n_reasoning, model.beam_size)[0]
    assert torch.equal(items, want)
    shift = scores - want_scores  # log π(best trace), the same for every item of a user
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), atol=1e-4, rtol=0)
    assert (shift < 0).all()
    assert all(len(set(row.tolist())) == row.numel() for row in pairs), "distinct: one beam per item"
    assert any(len(set(row.tolist())) < row.numel() for row in repeated), "pairs: an item in several beams"


def test_the_trace_gate_learns_at_its_own_rate_and_needs_the_separator(make_stream, train_rows) -> None:
    """L_SFT reaches the gate; SFT's optimiser gives it ``trace_gate_learning_rate`` (no weight decay), and the
    gate without ``trace_separator`` is a one-line error."""
    model, config = make_stream(trace_separator=True, trace_gate=-4.0, trace_gate_learning_rate=0.05,
                                dpo_weight=0.0)
    model.set_stage("sft")
    model.train()
    sum(model.sft_loss(with_trace(model, train_rows[:16]))).backward()
    assert model.trace_gate.grad is not None and model.trace_gate.grad.abs().sum() > 0
    trainer = STREAMRecTrainer(config, model)
    trainer._begin_stage("sft")
    group = next(g for g in trainer.optimizer.param_groups if any(p is model.trace_gate for p in g["params"]))
    assert group["initial_lr"] == 0.05 and group["weight_decay"] == 0.0 and len(group["params"]) == 1
    with pytest.raises(ValueError, match="trace_gate needs trace_separator"):
        make_stream(trace_gate=-4.0)


def with_trace(model: STREAMRec, rows) -> Interaction:
    """``rows`` with their annotation as the trace."""
    rows = Interaction(dict(rows.interaction))
    rows[model.REASONING_FIELD] = model.annotate(rows)
    return rows
