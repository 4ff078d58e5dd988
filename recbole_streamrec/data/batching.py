"""Training batches of similar history length (the generative models' encoder cost grows with the longest one).

Real histories are short (mean 3.8 items on amazon2018-scientific, 6.3 on amazon2023-instruments, of at most
20): RecBole pads every row to ``MAX_ITEM_LIST_LENGTH``, so 70–80% of the encoder's tokens were padding.
:meth:`GenerativeRecommender.history_tokens` cuts a batch to its longest history; this module makes that cut
pay by drawing each training batch from one length bucket.

Every epoch, the rows of each bucket (histories of ``bucket_width`` consecutive lengths) are shuffled and cut
into batches, and the batches of all buckets are shuffled together. The order comes from a generator seeded by
the config's ``seed``, so a run is reproducible; every row is seen exactly once per epoch.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from recbole.data.dataloader import TrainDataLoader
from torch import Tensor


class LengthBucketBatchSampler(torch.utils.data.Sampler):
    """Batches of row indices, each from one length bucket; shuffled within and across buckets."""

    def __init__(self, lengths: Tensor, batch_size: int, *, bucket_width: int = 1, seed: int = 0,
                 shuffle: bool = True):
        if batch_size < 1 or bucket_width < 1:
            raise ValueError(f"batch_size and bucket_width must be >= 1, not {batch_size} and {bucket_width}")
        self.batch_size, self.shuffle = batch_size, shuffle
        bucket = (lengths.long().clamp(min=1) - 1) // bucket_width  # [N]
        order = torch.argsort(bucket, stable=True)
        sizes = torch.bincount(bucket).tolist()
        self.buckets = [b for b in order.split(sizes) if len(b)]  # row indices per bucket
        self.generator = torch.Generator().manual_seed(seed)

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
            yield batches[i].tolist()


class LengthBucketTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` whose batches come from :class:`LengthBucketBatchSampler`.

    Everything else (collation, transforms, the dataset object that STREAM-Rec's annotation writes into) is
    RecBole's; only the order of the row indices changes.
    """

    def __init__(self, config, dataset, sampler, shuffle: bool = True):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        self.bucket_sampler = LengthBucketBatchSampler(
            lengths, self.step, bucket_width=config["length_bucket_width"] or 1, seed=config["seed"], shuffle=shuffle)

    @property
    def _index_sampler(self):
        # torch's DataLoader draws its batches of indices from here (a property, so no re-initialisation)
        return getattr(self, "bucket_sampler", None) or super()._index_sampler


def bucketed(config, train_data):
    """``train_data`` rebuilt with length buckets when ``length_buckets`` is on (single-process runs)."""
    if not config["length_buckets"] or not config["single_spec"] or not isinstance(train_data, TrainDataLoader):
        return train_data
    return LengthBucketTrainDataLoader(config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle)
