"""Cached decoding equals uncached, and constrained beam search equals both brute force and ``generate``.

References are ``transformers``' own T5: the teacher-forced forward (``model.t5(input_ids=…,
decoder_input_ids=…)``) and ``model.t5.generate`` with a trie-based ``prefix_allowed_tokens_fn``.

Ties: with random float weights two different items practically never get log-probabilities within 1e-5,
but if they do their order is arbitrary in either implementation. :func:`assert_same_ranking` therefore
compares the scores position by position (within ``atol``) and the *items* exactly, except that items whose
scores lie within ``atol`` of each other are compared as a set (and a tie group cut by the top-k boundary
is compared by score only).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_streamrec.model.t5_decoding import CachedT5Decoder
from recbole_streamrec.tokenizer.codes import PAD, tokens_to_codes

ATOL = 1e-5


@pytest.fixture(scope="module", params=["1+1 layers", "2+2 layers"])
def tiger(request, tiny_tiger, make_tiger):
    """The tiny TIGER, and one with two encoder and two decoder layers (per-layer caches, shared bias)."""
    return tiny_tiger if request.param == "1+1 layers" else make_tiger(num_layers=2, num_decoder_layers=2)


def encoder_inputs(model, batch) -> tuple[Tensor, Tensor]:
    return model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])


def random_labels(model, n: int, seed: int) -> Tensor:
    """``[n, m + 1]`` labels (codes of random items, then EOS)."""
    items = torch.randint(1, model.n_items, (n,), generator=torch.Generator().manual_seed(seed))
    return model.item_labels(items)


@torch.no_grad()
def teacher_forced(model, ids: Tensor, mask: Tensor, decoder_input: Tensor) -> tuple[Tensor, Tensor]:
    """``transformers``' uncached forward: decoder states ``[N, T, d]`` and log-probabilities ``[N, T, V]``."""
    out = model.t5(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input, output_hidden_states=True)
    return out.decoder_hidden_states[-1], F.log_softmax(out.logits, dim=-1)


@torch.no_grad()
def cached_states(model, ids: Tensor, mask: Tensor):
    cached = CachedT5Decoder(model.t5.decoder)
    enc = model.t5.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return cached, cached.start(enc, mask)


# ---- cached decoder = uncached forward --------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_cached_decoder_equals_teacher_forced_t5(tiger, tiny_batch, chunk: int) -> None:
    """Feeding the decoder ``chunk`` tokens per step reproduces every position of the uncached forward."""
    ids, mask = encoder_inputs(tiger, tiny_batch)
    assert (mask == 0).any(), "some histories are padded, so the cross-attention mask matters"
    decoder_input = tiger.shift_right(random_labels(tiger, ids.shape[0], seed=chunk))  # [B, m + 1]
    ref_hidden, ref_logp = teacher_forced(tiger, ids, mask, decoder_input)
    cached, state = cached_states(tiger, ids, mask)
    with torch.no_grad():
        hidden = torch.cat([cached.step(decoder_input[:, t : t + chunk], state)
                            for t in range(0, decoder_input.shape[1], chunk)], dim=1)  # [B, m + 1, d]
        logp = F.log_softmax(tiger.logits(hidden), dim=-1)
    assert state.length == decoder_input.shape[1]
    torch.testing.assert_close(hidden, ref_hidden, atol=ATOL, rtol=0)
    torch.testing.assert_close(logp, ref_logp, atol=ATOL, rtol=0)


def test_cached_decoder_after_expand_and_select(tiger, tiny_batch) -> None:
    """Groups share the cross-attention cache; ``expand`` and a beam reordering ``select`` stay exact."""
    ids, mask = encoder_inputs(tiger, tiny_batch)
    batch, group = ids.shape[0], 3
    cached, state = cached_states(tiger, ids, mask)
    start = torch.full((batch, 1), PAD, dtype=torch.long)
    with torch.no_grad():
        cached.step(start, state)  # one sequence per user
        state.expand(group)  # → B·G sequences, copies adjacent
        first = random_labels(tiger, batch * group, seed=1)[:, :2]  # [B·G, 2] (q = 2 at once)
        cached.step(first, state)
        # reorder inside each user: sequence g takes the history of sequence pick[g] (one duplicated, one dropped)
        pick = torch.tensor([2, 0, 0])
        index = (torch.arange(batch).unsqueeze(1) * group + pick).reshape(-1)  # [B·G]
        state.select(index)
        second = random_labels(tiger, batch * group, seed=2)[:, :2]
        hidden = cached.step(second, state)  # [B·G, 2, d]
    decoder_input = torch.cat([start.repeat_interleave(group, 0), first[index], second], dim=1)  # [B·G, 5]
    ref_hidden, ref_logp = teacher_forced(tiger, ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0),
                                          decoder_input)
    torch.testing.assert_close(hidden, ref_hidden[:, 3:], atol=ATOL, rtol=0)
    torch.testing.assert_close(F.log_softmax(tiger.logits(hidden), -1), ref_logp[:, 3:], atol=ATOL, rtol=0)


# ---- beam search = brute force = transformers' generate ---------------------------------------------
def assert_same_ranking(items_a: Tensor, scores_a: Tensor, items_b: Tensor, scores_b: Tensor,
                        atol: float = 1e-4) -> None:
    """Same top lists ``[B, k]`` (best first) up to the order of near-tied items (module docstring).

    Rank by rank the scores agree; an item in both lists has the same score in both; an item in only one
    list must be tied (within ``atol``) with the last, cut-off score — it traded places with an item just
    below the cut.
    """
    torch.testing.assert_close(scores_a, scores_b, atol=atol, rtol=0)
    for user, (ia, sa, ib, sb) in enumerate(zip(items_a.tolist(), scores_a.tolist(), items_b.tolist(),
                                                scores_b.tolist())):
        a, b = dict(zip(ia, sa)), dict(zip(ib, sb))
        assert len(a) == len(ia) and len(b) == len(ib), f"user {user}: duplicate items {ia} / {ib}"
        where = f"user {user}: {ia} vs {ib} (scores {[round(x, 6) for x in sa]})"
        for item in a.keys() & b.keys():
            assert abs(a[item] - b[item]) <= atol, f"item {item} scored differently; {where}"
        cut = min(sa[-1], sb[-1])
        for item in a.keys() ^ b.keys():
            assert a.get(item, b.get(item)) - cut <= atol, f"item {item} in one list only; {where}"


@torch.no_grad()
def exhaustive_scores(model, ids: Tensor, mask: Tensor) -> Tensor:
    """``[B, n_items]`` log-probability of every item's full code sequence (teacher-forced), −inf for id 0."""
    batch, n_items = ids.shape[0], model.n_items
    labels = model.item_labels(torch.arange(1, n_items))[:, : model.n_codes]  # [I, m] (EOS not scored)
    decoder_input = model.shift_right(labels).repeat(batch, 1)  # [B·I, m]
    _, logp = teacher_forced(model, ids.repeat_interleave(n_items - 1, 0), mask.repeat_interleave(n_items - 1, 0),
                             decoder_input)
    token_logp = logp.gather(2, labels.repeat(batch, 1).unsqueeze(2)).squeeze(2)  # [B·I, m]
    scores = token_logp.sum(1).view(batch, n_items - 1)
    return torch.cat([scores.new_full((batch, 1), float("-inf")), scores], dim=1)


def test_beam_search_equals_exhaustive_scoring_when_beam_covers_all_items(tiger, tiny_batch) -> None:
    n_real = tiger.n_items - 1  # 40 > K = 16: the beam is wider than the first level
    ids, mask = encoder_inputs(tiger, tiny_batch)
    brute = exhaustive_scores(tiger, ids, mask)  # [B, n_items]
    items, scores = tiger.generate_items(tiny_batch, beam_size=n_real)
    assert torch.isfinite(scores).all()
    beam_full = torch.full_like(brute, float("-inf")).scatter_(1, items, scores)
    torch.testing.assert_close(beam_full, brute, atol=1e-4, rtol=0)  # every item, every score
    top_scores, top_items = brute.topk(10, dim=1)
    assert_same_ranking(items[:, :10], scores[:, :10], top_items, top_scores)


def hf_prefix_allowed_tokens(item_tokens: Tensor):
    """``prefix_allowed_tokens_fn`` for ``generate``: the trie of item token tuples as a dict."""
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in item_tokens[1:].tolist():
        for depth in range(len(row)):
            allowed.setdefault(tuple(row[:depth]), set()).add(row[depth])
    table = {prefix: sorted(tokens) for prefix, tokens in allowed.items()}

    def fn(batch_id: int, sent: Tensor) -> list[int]:
        # sent = [decoder start, generated tokens…]; a beam off the trie (−inf) may continue anywhere
        return table.get(tuple(sent[1:].tolist()), [PAD])

    return fn


@torch.no_grad()
def hf_generate(model, ids: Tensor, mask: Tensor, beam: int, top: int = 10) -> tuple[Tensor, Tensor]:
    out = model.t5.generate(
        input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=top,
        max_new_tokens=model.n_codes, prefix_allowed_tokens_fn=hf_prefix_allowed_tokens(model.item_tokens),
        length_penalty=0.0, do_sample=False, early_stopping=False, output_scores=True,
        return_dict_in_generate=True,
    )
    tokens = out.sequences[:, 1 : 1 + model.n_codes]  # [B·top, m]
    items = model.trie.lookup(tokens_to_codes(tokens, codebook_size=model.codebook_size))
    return items.view(-1, top), out.sequences_scores.view(-1, top)


@pytest.mark.parametrize("beam", [10, 20])
def test_beam_search_equals_transformers_generate(tiger, tiny_batch, beam: int) -> None:
    ids, mask = encoder_inputs(tiger, tiny_batch)
    ref_items, ref_scores = hf_generate(tiger, ids, mask, beam)
    assert (ref_items > 0).all(), "generate returned a non-item"
    items, scores = tiger.generate_items(tiny_batch, beam_size=beam)
    assert_same_ranking(items[:, :10], scores[:, :10], ref_items, ref_scores)


@pytest.fixture(scope="module")
def trained_tiger(make_tiger, tiny_data):
    """The tiny TIGER after 15 quick epochs on ``tiny`` (peaked next-code distributions)."""
    model = make_tiger().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        for batch in tiny_data[2]:
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()
    return model.eval()


def test_beam_search_equals_generate_on_a_trained_model(trained_tiger, tiny_batch) -> None:
    """Same check on peaked (trained) distributions, where beams prune hard and the order matters."""
    model = trained_tiger
    ids, mask = encoder_inputs(model, tiny_batch)
    ref_items, ref_scores = hf_generate(model, ids, mask, model.beam_size)
    items, scores = model.generate_items(tiny_batch)
    assert_same_ranking(items[:, :10], scores[:, :10], ref_items, ref_scores)
    # untrained, a 4-code sequence costs about 4·log(V) ≈ 17 nats; trained, the best item is far likelier
    assert ref_scores[:, 0].mean() > -4.0, "training did not peak the distributions"
