"""RQ-VAE item tokenizer: item vectors -> semantic IDs (TIGER, STREAM-Rec).

An MLP encoder maps each item vector to a latent ``z``; ``n_levels`` residual codebooks quantise it
coarse-to-fine (``h_1 = z``, ``c_d = argmin_k ||h_d - e_k||^2``, ``h_{d+1} = h_d - e_{c_d}``) and a
mirrored decoder reconstructs the vector from ``z_hat = sum_d e_{c_d}``. The codes ``(c_1, ..., c_L)``
are the item's semantic ID; :func:`add_dedup_level` appends one more code so that every ID is unique.

Usage mirrors ``vector-quantize-pytorch``::

    x_hat, codes, losses = rqvae(x)                 # codes: [N, n_levels]
    x_hat = rqvae.get_output_from_indices(codes)    # inverse, through the decoder
    model, semantic_ids, report = train_rqvae(item_vectors, codebook_size=256)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["RQVAE", "RQVAEReport", "add_dedup_level", "compute_report", "train_rqvae"]

_DEFAULT_HIDDEN: tuple[int, ...] = (512, 256, 128)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them and no activation on the output."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _nearest(h: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codeword (squared euclidean) for each row: h [N, D], codebook [K, D] -> [N]."""
    # ||h||^2 is the same for every codeword of a row, so it cannot change the argmin: drop it.
    dist = codebook.pow(2).sum(-1) - 2.0 * h @ codebook.T  # [N, K]
    return dist.argmin(dim=-1)


def _kmeans_centroids(res: np.ndarray, k: int, *, seed: int, rng: np.random.Generator) -> np.ndarray:
    """k centroids [k, D] for the residuals res [N, D].

    With fewer distinct residuals than k (small N, or a previous level that already fits some
    items exactly), k-means would return duplicate centroids; the spare codewords are random
    residuals plus small noise instead, so no two coincide and each can still win an argmin.
    """
    n_distinct = np.unique(res, axis=0).shape[0]
    n_clusters = min(k, n_distinct)
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(res)
    centroids = km.cluster_centers_.astype(np.float32)  # [n_clusters, D]
    if n_clusters == k:
        return centroids
    extra = res[rng.integers(0, res.shape[0], size=k - n_clusters)]  # [k - n_clusters, D]
    scale = 1e-3 * (float(res.std()) or 1.0)
    extra = extra + scale * rng.standard_normal(extra.shape).astype(np.float32)
    return np.concatenate([centroids, extra], axis=0)  # [k, D]


class RQVAE(nn.Module):
    """Residual-quantised VAE over item vectors.

    Codebooks live in one parameter ``codebooks`` of shape ``[n_levels, codebook_size, latent_dim]``.
    The encoder and decoder hold no dropout or normalisation, so train and eval mode compute the same.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        hidden_dims: Sequence[int] = _DEFAULT_HIDDEN,
        latent_dim: int = 32,
        n_levels: int = 3,
        codebook_size: int = 256,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        if n_levels < 1 or codebook_size < 1:
            raise ValueError(f"need n_levels >= 1 and codebook_size >= 1, got {n_levels}, {codebook_size}")
        self.in_dim = in_dim
        self.latent_dim = latent_dim
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.beta = beta
        hidden = list(hidden_dims)
        self.encoder = _mlp([in_dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), in_dim])
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, latent_dim))

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        """Residual quantisation of z [N, D].

        Returns ``(z_hat [N, D], codes [N, n_levels], residuals (n_levels x [N, D]), quant_loss [])``.
        """
        h = z
        z_hat = torch.zeros_like(z)
        codes: list[Tensor] = []
        residuals: list[Tensor] = []
        quant = z.new_zeros(())
        for d in range(self.n_levels):
            codebook = self.codebooks[d]  # [K, D]
            idx = _nearest(h.detach(), codebook.detach())  # [N]
            # F.embedding, not codebook[idx]: the backward of advanced indexing accumulates with
            # threads in a varying order on CPU, which broke run-to-run determinism for a fixed seed.
            e = F.embedding(idx, codebook)  # [N, D]
            codebook_term = (h.detach() - e).pow(2).sum(-1).mean()
            commit_term = (h - e.detach()).pow(2).sum(-1).mean()
            quant = quant + codebook_term + self.beta * commit_term
            codes.append(idx)
            residuals.append(h)
            z_hat = z_hat + e.detach()
            # Detached so that a codeword is trained only by its own codebook term, not by the
            # commitment terms of the deeper levels that it shifted.
            h = h - e.detach()
        return z_hat, torch.stack(codes, dim=-1), residuals, quant  # codes: [N, L]

    def forward_with_residuals(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor], list[Tensor]]:
        """:meth:`forward` plus the per-level residuals ``h_d`` (n_levels x [N, latent_dim], with grad)."""
        z = self.encoder(x)  # [N, D]
        z_hat, codes, residuals, quant = self._quantize(z)
        # Straight-through: the decoder sees z_hat, the reconstruction gradient flows into z.
        x_hat = self.decoder(z + (z_hat - z).detach())  # [N, in_dim]
        recon = (x - x_hat).pow(2).sum(-1).mean()
        losses = {"loss": recon + quant, "recon": recon, "quant": quant}
        return x_hat, codes, losses, residuals

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """x [N, in_dim] -> ``(x_hat [N, in_dim], codes [N, n_levels] long, {'loss','recon','quant'})``."""
        x_hat, codes, losses, _ = self.forward_with_residuals(x)
        return x_hat, codes, losses

    @torch.no_grad()
    def encode_with_residuals(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x [N, in_dim] -> ``(codes [N, n_levels], residuals n_levels x [N, latent_dim])``, no grad."""
        was_training = self.training
        self.eval()
        try:
            _, codes, residuals, _ = self._quantize(self.encoder(x))
        finally:
            self.train(was_training)
        return codes, residuals

    def encode(self, x: Tensor) -> Tensor:
        """x [N, in_dim] -> semantic codes LongTensor [N, n_levels] (no grad)."""
        return self.encode_with_residuals(x)[0]

    def get_output_from_indices(self, codes: Tensor) -> Tensor:
        """codes [N, n_levels] -> x_hat [N, in_dim]: the decoder applied to ``sum_d e_{c_d}``."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.codebooks.device)
        if codes.ndim != 2 or codes.shape[1] != self.n_levels:
            raise ValueError(
                f"expected codes of shape [N, {self.n_levels}], got {tuple(codes.shape)} "
                "(drop the dedup column added by add_dedup_level first)"
            )
        levels = torch.arange(self.n_levels, device=codes.device)
        z_hat = self.codebooks[levels, codes].sum(dim=1)  # [N, L, D] -> [N, D]
        return self.decoder(z_hat)

    @torch.no_grad()
    def init_codebooks_kmeans(self, x: Tensor, *, seed: int) -> None:
        """Set each level's codebook to k-means centroids of that level's residuals over x [N, in_dim]."""
        rng = np.random.default_rng(seed)
        h = self.encoder(x)  # [N, D]
        for d in range(self.n_levels):
            res = h.detach().cpu().numpy().astype(np.float32)  # [N, D]
            centroids = _kmeans_centroids(res, self.codebook_size, seed=seed, rng=rng)  # [K, D]
            self.codebooks[d].copy_(torch.as_tensor(centroids, device=h.device))
            # Re-assign with the model's own rule, so the next level sees the residuals forward() will.
            h = h - self.codebooks[d][_nearest(h, self.codebooks[d])]

    @torch.no_grad()
    def reset_dead_codes(
        self,
        residuals_per_level: list[Tensor],
        usage: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """Move every unused codeword onto a random residual of its level; returns how many moved.

        residuals_per_level: n_levels x [N, latent_dim]; usage: [n_levels, codebook_size] counts.
        A dead codeword gets no gradient, so it would otherwise stay dead for good.
        """
        expected = (self.n_levels, self.codebook_size)
        if tuple(usage.shape) != expected:
            raise ValueError(f"usage must have shape {list(expected)}, got {list(usage.shape)}")
        n_reset = 0
        for d, res in enumerate(residuals_per_level):
            dead = (usage[d] == 0).nonzero().flatten().to(self.codebooks.device)  # [n_dead]
            if dead.numel() == 0 or res.shape[0] == 0:
                continue
            if dead.numel() <= res.shape[0]:  # distinct residuals, so revived codewords do not coincide
                pick = torch.randperm(res.shape[0], generator=generator)[: dead.numel()]
            else:
                pick = torch.randint(res.shape[0], (dead.numel(),), generator=generator)
            self.codebooks[d, dead] = res[pick.to(res.device)].detach().to(self.codebooks.device)
            n_reset += dead.numel()
        return n_reset


def _group_prefixes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group identical rows of codes [N, L] -> ``(unique_rows [G, L], inverse [N], counts [G])``."""
    uniq, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return uniq, inverse.reshape(-1), counts  # numpy 2.0.x returned a 2-D inverse for axis=0


def add_dedup_level(codes: np.ndarray | Tensor, *, codebook_size: int = 256) -> np.ndarray:
    """Append a code that tells apart items sharing a prefix: codes [N, L] -> [N, L + 1].

    The new code is the item's rank (in original row order) among the items with the same L codes,
    so it is 0 for a unique item. Raises ValueError if a group has more items than ``codebook_size``.
    """
    if isinstance(codes, Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D [N, L], got shape {codes.shape}")
    if codes.shape[0] == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    uniq, inverse, counts = _group_prefixes(codes)
    worst = int(counts.argmax())
    if counts[worst] > codebook_size:
        raise ValueError(
            f"prefix {tuple(int(c) for c in uniq[worst])} is shared by {int(counts[worst])} items, more than "
            f"codebook_size={codebook_size} dedup codes; use a larger codebook or train the RQ-VAE longer"
        )
    order = np.argsort(inverse, kind="stable")  # group by group, original order inside a group
    starts = np.cumsum(counts) - counts  # [G] first sorted position of each group
    rank = np.empty_like(inverse)
    rank[order] = np.arange(len(order)) - starts[inverse[order]]
    return np.concatenate([codes, rank[:, None]], axis=1)  # [N, L + 1]


@dataclass
class RQVAEReport:
    """Quality of a trained RQ-VAE over a set of items (losses are means per item)."""

    recon_loss: float
    quant_loss: float
    usage_per_level: list[float]
    prefix_collision_rate: float
    max_group_size: int

    def summary(self) -> str:
        """Readable multi-line description."""
        usage = ", ".join(f"L{d + 1}={u:.1%}" for d, u in enumerate(self.usage_per_level))
        return "\n".join(
            [
                "RQ-VAE report",
                f"  recon loss:            {self.recon_loss:.6f}",
                f"  quant loss:            {self.quant_loss:.6f}",
                f"  codebook usage:        {usage}",
                f"  prefix collision rate: {self.prefix_collision_rate:.2%}",
                f"  max items per prefix:  {self.max_group_size}",
            ]
        )


@torch.no_grad()
def _evaluate(model: RQVAE, x: Tensor, batch_size: int) -> tuple[Tensor, float, float]:
    """Codes [N, n_levels] and item-mean recon / quant losses over x [N, in_dim], in chunks."""
    model.eval()
    codes, recon, quant = [], 0.0, 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        _, c, losses = model(xb)
        codes.append(c)
        recon += losses["recon"].item() * xb.shape[0]
        quant += losses["quant"].item() * xb.shape[0]
    n = max(x.shape[0], 1)
    return torch.cat(codes), recon / n, quant / n


def compute_report(model: RQVAE, vectors: np.ndarray | Tensor, *, batch_size: int = 4096) -> RQVAEReport:
    """Encode vectors [N, in_dim] with model and measure losses, codebook usage and prefix collisions.

    Leaves the model in eval mode.
    """
    x = torch.as_tensor(vectors, dtype=torch.float32, device=model.codebooks.device)
    codes, recon, quant = _evaluate(model, x, batch_size)
    return _report_from(model, codes, recon, quant)


def _report_from(model: RQVAE, codes: Tensor, recon: float, quant: float) -> RQVAEReport:
    """Build the report from codes [N, n_levels] and already measured losses."""
    usage = [torch.unique(codes[:, d]).numel() / model.codebook_size for d in range(model.n_levels)]
    _, inverse, counts = _group_prefixes(codes.cpu().numpy())
    return RQVAEReport(
        recon_loss=recon,
        quant_loss=quant,
        usage_per_level=usage,
        prefix_collision_rate=float((counts[inverse] > 1).mean()),
        max_group_size=int(counts.max()),
    )


def _level_usage(codes: Tensor, codebook_size: int) -> Tensor:
    """Counts per codeword: codes [N, L] -> usage [L, K]."""
    n_levels = codes.shape[1]
    offsets = torch.arange(n_levels, device=codes.device) * codebook_size  # one bincount for all levels
    flat = (codes + offsets).flatten()  # [N * L]
    return torch.bincount(flat, minlength=n_levels * codebook_size).view(n_levels, codebook_size)


def _train_epoch(
    model: RQVAE, x: Tensor, optimizer: torch.optim.Optimizer, batch_size: int, generator: torch.Generator
) -> tuple[dict[str, float], Tensor, list[Tensor]]:
    """One pass over shuffled minibatches: item-mean losses, usage [L, K] and residuals (L x [N, D])."""
    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    usage = torch.zeros(model.n_levels, model.codebook_size, dtype=torch.long, device=x.device)
    seen: list[list[Tensor]] = [[] for _ in range(model.n_levels)]
    # Summed as tensors: a per-batch .item() would force a device sync on every step.
    totals = {key: torch.zeros((), device=x.device) for key in ("loss", "recon", "quant")}
    for start in range(0, n, batch_size):
        xb = x[perm[start : start + batch_size]]
        _, codes, losses, residuals = model.forward_with_residuals(xb)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        usage += _level_usage(codes, model.codebook_size)
        for d, res in enumerate(residuals):
            seen[d].append(res.detach())
        for key in totals:
            totals[key] += losses[key].detach() * xb.shape[0]
    means = {key: value.item() / n for key, value in totals.items()}
    return means, usage, [torch.cat(chunks) for chunks in seen]


def train_rqvae(
    vectors: np.ndarray | Tensor,
    *,
    epochs: int = 200,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 2024,
    hidden_dims: Sequence[int] = _DEFAULT_HIDDEN,
    latent_dim: int = 32,
    n_levels: int = 3,
    codebook_size: int = 256,
    beta: float = 0.25,
    reset_dead_every: int = 1,
    log_every: int = 50,
    logger: logging.Logger | None = None,
) -> tuple[RQVAE, np.ndarray, RQVAEReport]:
    """Train an RQ-VAE on item vectors [N, d] and return ``(model, codes [N, n_levels + 1], report)``.

    The last code column comes from :func:`add_dedup_level`, so every returned ID is unique; if a
    prefix group is too large for it, the report is logged and its ValueError propagates.
    ``reset_dead_every <= 0`` disables dead-code resets; ``log_every <= 0`` disables progress logs.
    """
    log = logger or logging.getLogger(__name__)
    x = torch.as_tensor(vectors, dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty [N, d] array, got shape {tuple(x.shape)}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = RQVAE(
        in_dim=x.shape[1], hidden_dims=hidden_dims, latent_dim=latent_dim,
        n_levels=n_levels, codebook_size=codebook_size, beta=beta
    )
    model.init_codebooks_kmeans(x, seed=seed)
    # No weight decay on codewords: it would drag them towards the origin, away from their residuals.
    net_params = [p for name, p in model.named_parameters() if name != "codebooks"]
    param_groups = [{"params": net_params}, {"params": [model.codebooks], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(param_groups, lr=lr)
    for epoch in range(1, epochs + 1):
        means, usage, residuals = _train_epoch(model, x, optimizer, batch_size, generator)
        n_reset = 0
        if reset_dead_every > 0 and epoch % reset_dead_every == 0:
            n_reset = model.reset_dead_codes(residuals, usage, generator=generator)
        if log_every > 0 and (epoch % log_every == 0 or epoch == epochs):
            log.info(
                "rqvae epoch %d/%d loss=%.5f recon=%.5f quant=%.5f dead_codes_reset=%d",
                epoch, epochs, means["loss"], means["recon"], means["quant"], n_reset
            )
    codes, recon, quant = _evaluate(model, x, batch_size)
    report = _report_from(model, codes, recon, quant)
    try:
        semantic_ids = add_dedup_level(codes, codebook_size=codebook_size)
    except ValueError:
        # The caller gets neither model nor report when this raises, so show the report here.
        log.error("RQ-VAE codes cannot be deduplicated:\n%s", report.summary())
        raise
    return model, semantic_ids, report
