"""Tests for the RQ-VAE semantic-ID tokenizer (small synthetic data, small nets, a few seconds)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from recbole_streamrec.tokenizer.rqvae import (
    RQVAE,
    RQVAEReport,
    add_dedup_level,
    compute_report,
    train_rqvae,
)

DIM = 32
SMALL = {"hidden_dims": (64, 32), "latent_dim": 8}
Trained = tuple[RQVAE, np.ndarray, RQVAEReport, np.ndarray]  # model, codes [N, 4], report, x [N, DIM]


def clustered(
    n: int, n_clusters: int, *, dim: int = DIM, spread: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """n float32 vectors [n, dim] around n_clusters far-apart centres, and their cluster labels [n]."""
    rng = np.random.default_rng(seed)
    centres = 5.0 * rng.standard_normal((n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    labels[:n_clusters] = np.arange(n_clusters)  # every cluster is present
    x = centres[labels] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32), labels


def item_like(n: int, *, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """n float32 vectors [n, dim]: 12 cluster centres plus a shared rank-4 within-cluster structure.

    Pure isotropic noise around centres has nothing a decoder can learn beyond the centres, so the
    encoder rightly collapses it and prefixes collide en masse; real item embeddings vary smoothly.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    basis = rng.standard_normal((4, dim)) / 2.0  # [4, dim]
    x = centres[rng.integers(0, 12, size=n)] + rng.standard_normal((n, 4)) @ basis
    return (x + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Run on one intra-op thread: the nets are tiny, and on a busy 2-core runner every OpenMP
    barrier waits for a descheduled second thread, which made training ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> Trained:
    x = item_like(600)
    model, codes, report = train_rqvae(x, epochs=40, batch_size=128, codebook_size=16, seed=7, **SMALL)
    return model, codes, report, x


# ----------------------------------------------------------------------------- add_dedup_level


def test_dedup_hand_example() -> None:
    codes = np.array([[1, 2], [1, 2], [3, 4], [1, 2]])
    out = add_dedup_level(codes, codebook_size=4)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out[:, :2], codes)
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 2])


def test_dedup_accepts_tensor_and_keeps_original_order() -> None:
    codes = torch.tensor([[0, 5], [2, 2], [0, 5], [2, 2], [2, 2], [9, 9]])
    out = add_dedup_level(codes, codebook_size=8)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 1, 2, 0])
    assert len({tuple(row) for row in out.tolist()}) == len(out)


def test_dedup_group_larger_than_codebook_raises() -> None:
    codes = np.array([[7, 1]] * 5 + [[0, 0]])
    with pytest.raises(ValueError, match=r"\(7, 1\).*5 items") as info:
        add_dedup_level(codes, codebook_size=4)
    assert "larger codebook" in str(info.value)
    assert add_dedup_level(codes, codebook_size=5)[:5, 2].tolist() == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- model mechanics


def test_forward_shapes_and_losses() -> None:
    torch.manual_seed(0)
    model = RQVAE(in_dim=DIM, n_levels=3, codebook_size=16, **SMALL)
    x = torch.randn(50, DIM)
    x_hat, codes, losses = model(x)
    assert x_hat.shape == (50, DIM)
    assert codes.shape == (50, 3) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    assert set(losses) == {"loss", "recon", "quant"}
    assert torch.isclose(losses["loss"], losses["recon"] + losses["quant"])
    assert torch.isclose(losses["recon"], ((x - x_hat) ** 2).sum(-1).mean())
    losses["loss"].backward()
    assert model.codebooks.grad is not None and model.codebooks.grad.abs().sum() > 0
    assert model.encoder[0].weight.grad.abs().sum() > 0  # straight-through reaches the encoder


def test_residuals_follow_the_recursion() -> None:
    torch.manual_seed(1)
    model = RQVAE(in_dim=DIM, n_levels=3, codebook_size=8, **SMALL)
    x = torch.randn(40, DIM)
    codes, residuals = model.encode_with_residuals(x)
    with torch.no_grad():
        torch.testing.assert_close(residuals[0], model.encoder(x))
        for d in range(2):
            expected = residuals[d] - model.codebooks[d][codes[:, d]]
            torch.testing.assert_close(residuals[d + 1], expected)
        # each code is the nearest codeword of its level's residual
        for d in range(3):
            dist = torch.cdist(residuals[d], model.codebooks[d])  # [N, K]
            picked = dist.gather(1, codes[:, d : d + 1]).squeeze(1)
            assert torch.all(picked <= dist.min(dim=1).values + 1e-5)


def test_round_trip_matches_forward() -> None:
    torch.manual_seed(2)
    model = RQVAE(in_dim=DIM, n_levels=2, codebook_size=16, **SMALL).eval()
    x = torch.randn(64, DIM)
    with torch.no_grad():
        x_hat, codes, _ = model(x)
    torch.testing.assert_close(model.encode(x), codes)
    with torch.no_grad():
        decoded = model.get_output_from_indices(model.encode(x))  # [N, DIM]
    # not bit-equal: forward decodes z + (z_hat - z), which rounds differently from z_hat
    torch.testing.assert_close(decoded, x_hat, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="dedup"):
        model.get_output_from_indices(torch.zeros(3, 3, dtype=torch.long))


def test_kmeans_init_recovers_clusters() -> None:
    n_clusters = 8
    x, labels = clustered(400, n_clusters, spread=0.05, seed=3)
    torch.manual_seed(3)
    model = RQVAE(in_dim=DIM, n_levels=2, codebook_size=n_clusters, **SMALL)
    model.init_codebooks_kmeans(torch.as_tensor(x), seed=3)
    level1 = model.encode(torch.as_tensor(x))[:, 0].numpy()
    for c in range(n_clusters):
        assert len(np.unique(level1[labels == c])) == 1, f"cluster {c} split across codes"
    cluster_code = {c: level1[labels == c][0] for c in range(n_clusters)}
    assert len(set(cluster_code.values())) == n_clusters  # distinct clusters -> distinct codes


def test_kmeans_init_with_fewer_items_than_codewords() -> None:
    torch.manual_seed(4)
    model = RQVAE(in_dim=DIM, n_levels=2, codebook_size=32, **SMALL)
    x = torch.randn(10, DIM)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.init_codebooks_kmeans(x, seed=4)
    for d in range(2):
        assert torch.isfinite(model.codebooks[d]).all()
        assert torch.unique(model.codebooks[d], dim=0).shape[0] == 32  # no duplicate codewords
    assert not [w for w in caught if "distinct clusters" in str(w.message)]
    z = model.encoder(x).detach()
    # 10 items, 10 clusters: the first level reproduces every latent exactly (up to float error)
    torch.testing.assert_close(model.codebooks[0][model.encode(x)[:, 0]], z, atol=1e-4, rtol=1e-4)


def test_reset_dead_codes_moves_unused_codeword_onto_a_residual() -> None:
    torch.manual_seed(5)
    model = RQVAE(in_dim=DIM, n_levels=2, codebook_size=8, **SMALL)
    x = torch.randn(100, DIM)
    model.init_codebooks_kmeans(x, seed=5)
    with torch.no_grad():
        model.codebooks[1, 3] = 1e4  # far from everything: never picked
    codes, residuals = model.encode_with_residuals(x)
    usage = torch.stack([torch.bincount(codes[:, d], minlength=8) for d in range(2)])  # [L, K]
    assert usage[1, 3] == 0
    before = model.codebooks.detach().clone()
    n_reset = model.reset_dead_codes(residuals, usage, generator=torch.Generator().manual_seed(0))
    assert n_reset >= 1 and n_reset == int((usage == 0).sum())
    new = model.codebooks[1, 3].detach()
    assert torch.isclose(residuals[1], new).all(dim=1).any(), "reset codeword is not a residual"
    alive = usage > 0
    torch.testing.assert_close(model.codebooks.detach()[alive], before[alive])  # used codes untouched
    assert model.encode(x)[:, 1].eq(3).any()  # the reset codeword is now used


# ----------------------------------------------------------------------------- training


def test_train_codes_shape_range_and_unique(trained: Trained) -> None:
    _, codes, _, x = trained
    assert isinstance(codes, np.ndarray) and codes.dtype == np.int64
    assert codes.shape == (len(x), 4)
    assert codes.min() >= 0 and codes.max() < 16
    assert len({tuple(row) for row in codes.tolist()}) == len(x)


def test_training_reduces_reconstruction_loss(trained: Trained) -> None:
    model, codes, report, x = trained
    torch.manual_seed(7)
    untrained = RQVAE(in_dim=DIM, n_levels=3, codebook_size=16, **SMALL)
    untrained.init_codebooks_kmeans(torch.as_tensor(x), seed=7)
    base = compute_report(untrained, x)
    assert report.recon_loss < 0.6 * base.recon_loss, (report.recon_loss, base.recon_loss)
    # the returned codes (minus the dedup column) are the model's own encoding
    np.testing.assert_array_equal(model.encode(torch.as_tensor(x)).numpy(), codes[:, :3])


def test_report_fields(trained: Trained) -> None:
    _, codes, report, _ = trained
    assert len(report.usage_per_level) == 3
    assert all(0.0 < u <= 1.0 for u in report.usage_per_level)
    assert 0.0 <= report.prefix_collision_rate <= 1.0
    groups = np.unique(codes[:, :3], axis=0, return_counts=True)[1]
    assert report.max_group_size == groups.max()
    assert report.recon_loss >= 0 and report.quant_loss >= 0
    text = report.summary()
    assert "collision" in text and "usage" in text and text.count("\n") >= 4


def test_forced_collisions_are_reported_and_deduplicated() -> None:
    x = item_like(200, seed=8)
    x = np.concatenate([x, x[:30]])  # 30 exact duplicates must share a prefix with their twin
    _, codes, report = train_rqvae(x, epochs=3, batch_size=128, codebook_size=16, seed=8, **SMALL)
    assert report.prefix_collision_rate >= 60 / len(x)
    assert report.max_group_size >= 2
    assert len({tuple(row) for row in codes.tolist()}) == len(x)
    np.testing.assert_array_equal(codes[200:, :3], codes[:30, :3])
    assert (codes[200:, 3] > codes[:30, 3]).all()  # the later twin gets the higher rank


def test_training_is_deterministic_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    x = item_like(300, seed=9)
    kwargs = dict(epochs=4, batch_size=64, codebook_size=32, seed=11, log_every=2, **SMALL)
    with caplog.at_level("INFO", logger="recbole_streamrec.tokenizer.rqvae"):
        _, c1, r1 = train_rqvae(x, **kwargs)
    _, c2, r2 = train_rqvae(torch.as_tensor(x), **kwargs)
    np.testing.assert_array_equal(c1, c2)
    assert r1 == r2
    epochs_logged = [rec.getMessage() for rec in caplog.records if "epoch" in rec.getMessage()]
    assert len(epochs_logged) == 2 and "epoch 4/4" in epochs_logged[-1]
    _, c3, _ = train_rqvae(x, **{**kwargs, "seed": 12})
    assert not np.array_equal(c1, c3)


def test_train_raises_and_logs_report_when_dedup_overflows(caplog: pytest.LogCaptureFixture) -> None:
    x = np.repeat(item_like(4, seed=10), 6, axis=0)  # each vector 6 times, only 4 dedup codes
    with caplog.at_level("ERROR", logger="recbole_streamrec.tokenizer.rqvae"):
        with pytest.raises(ValueError, match="shared by 6 items"):
            train_rqvae(x, epochs=1, batch_size=8, codebook_size=4, n_levels=2, seed=10, log_every=0, **SMALL)
    assert any("collision rate" in rec.getMessage() for rec in caplog.records)
