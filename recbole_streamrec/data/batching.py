"""Training batches of similar history length (the generative models' encoder cost grows with the longest one).

Real histories are short (mean 3.8 items on amazon2018-scientific, 6.3 on amazon2023-instruments, of at most
20): RecBole pads every row to ``MAX_ITEM_LIST_LENGTH``, so 70–80% of the encoder's tokens were padding.
:meth:`GenerativeRecommender.history_tokens` cuts a batch to its longest history; this module makes that cut
pay by drawing each training batch from one length bucket.

Every epoch, the rows of each bucket (histories of ``bucket_width`` consecutive lengths) are shuffled and cut
into batches, and the batches of all buckets are shuffled together. The order comes from a generator seeded by
the config's ``seed``, so a run is reproducible; every row is seen exactly once per epoch. Evaluation rows are
sorted by history length (:func:`length_sorted`) for the same reason.

Under DDP (``nproc`` > 1) every rank draws the very same batch list (same seed) and takes its own slice of each
batch (rows ``rank``, ``rank + N``, …), so ``train_batch_size`` is the global batch, all ranks take the same number
of steps, and one epoch of N processes sees the same batches as one process. A slice's loss is weighted by its
share of the batch (:func:`shard_weight`); a batch smaller than N gives the ranks left without a row one row
of it at weight 0, so they still take part in the step.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from recbole.data.dataloader import TrainDataLoader
from torch import Tensor


class LengthBucketBatchSampler(torch.utils.data.Sampler):
    """Batches of row indices, each from one length bucket; shuffled within and across buckets."""

    def __init__(self, lengths: Tensor, batch_size: int, *, bucket_width: int = 1, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or bucket_width < 1:
            raise ValueError(f"batch_size and bucket_width must be >= 1, not {batch_size} and {bucket_width}")
        self.batch_size, self.shuffle = batch_size, shuffle
        bucket = (lengths.long().clamp(min=1) - 1) // bucket_width  # [N]
        order = torch.argsort(bucket, stable=True)
        sizes = torch.bincount(bucket).tolist()
        self.buckets = [b for b in order.split(sizes) if len(b)]  # row indices per bucket
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.shard_sizes: list[int] = []  # rows per rank of the batch just yielded (DDP; 0: a weight-0 filler)

    def __len__(self) -> int:
        return sum(math.ceil(len(b) / self.batch_size) for b in self.buckets)

    def __iter__(self) -> Iterator[list[int]]:
        batches: list[Tensor] = []
        for rows in self.buckets:
            if self.shuffle:
                rows = rows[torch.randperm(len(rows), generator=self.generator)]
            batches.extend(rows.split(self.batch_size))
        order = torch.randperm(len(batches), generator=self.generator) if self.shuffle else range(len(batches))
        for i in order:
            if self.world_size == 1:
                yield batches[i].tolist()
                continue
            rows = batches[i]
            self.shard_sizes = [len(rows[r :: self.world_size]) for r in range(self.world_size)]
            mine = rows[self.rank :: self.world_size]
            yield (mine if len(mine) else rows[:1]).tolist()


def shard_weight(shard_sizes: list[int], rank: int, cap: Optional[int] = None) -> float:
    """Loss weight of ``rank``'s slice of a global batch: ``N · n_rank / Σ n`` (each ``n`` at most ``cap``).

    DDP averages the ranks' gradients, so weighting each slice's mean loss so makes the result the gradient of
    the mean loss over the whole batch, as one process computes it.
    """
    sizes = [min(n, cap) if cap else n for n in shard_sizes]
    return len(sizes) * sizes[rank] / sum(sizes)


class LengthBucketTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` whose batches come from :class:`LengthBucketBatchSampler`.

    Everything else (collation, transforms, the dataset object that STREAM-Rec's annotation writes into) is
    RecBole's; only the order of the row indices changes.
    """

    def __init__(self, config, dataset, sampler, shuffle: bool = True):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        rank, world_size = 0, 1
        if not config["single_spec"]:
            if config["worker"]:
                raise ValueError("length_buckets under DDP needs worker: 0 (the loss weight follows each batch)")
            self._init_batch_size_and_step()  # RecBole cut the step to a rank's share; the sampler splits batches
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        self.bucket_sampler = LengthBucketBatchSampler(
            lengths, self.step, bucket_width=config["length_bucket_width"] or 1, seed=config["seed"], shuffle=shuffle,
            rank=rank, world_size=world_size)

    @property
    def _index_sampler(self):
        # torch's DataLoader draws its batches of indices from here (a property, so no re-initialisation)
        return getattr(self, "bucket_sampler", None) or super()._index_sampler


def length_sorted(config, eval_data):
    """``eval_data`` with its rows ordered by history length, so each evaluation batch holds similar lengths.

    For sequential models RecBole's full-sort evaluation reads one row per user, in row order, and averages
    per-user metrics: the order of the rows changes which users share a batch (and so the encoder's padding),
    not the result.
    """
    if not config["length_buckets"] or eval_data is None or not getattr(eval_data, "is_sequential", False):
        return eval_data
    feat = eval_data._dataset.inter_feat
    order = torch.argsort(feat[config["ITEM_LIST_LENGTH_FIELD"]], stable=True)
    eval_data._dataset.inter_feat = feat[order]
    return eval_data


def bucketed(config, train_data):
    """``train_data`` rebuilt with length buckets when ``length_buckets`` is on (sharded by rank under DDP)."""
    if not config["length_buckets"] or not isinstance(train_data, TrainDataLoader):
        return train_data
    return LengthBucketTrainDataLoader(config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle)
