"""Data-parallel runs on ``torch.distributed``: gloo on a CPU, NCCL on GPUs (``ddp_backend``), RecBole's keys.

A run with ``nproc: N`` (``--nproc=N``) starts N processes through ``torch.multiprocessing.spawn``, as RecBole's
own ``run_recboles`` does; ``torchrun`` may start them instead (its ``LOCAL_RANK``/``WORLD_SIZE`` are read by
:class:`~recbole_streamrec.config.Config`). Each process is one rank. What this module adds to RecBole's DDP path:

* the process group on any backend (RecBole 1.2.1 hard-codes NCCL, so it cannot run on a CPU);
* evaluation that scores every user exactly once (RecBole's ``DistributedSampler`` pads a rank's share by
  repeating users when N does not divide their number): each rank takes one contiguous block of the users
  (:func:`sharded_eval`), and the per-user results of all ranks are gathered before the metrics are computed
  (:class:`GatheredEvaluator`), so the metrics are those of a one-process evaluation of the same weights;
* ``main_first``-style helpers (:func:`is_main`, :func:`barrier`) for files only rank 0 writes.

Outside a process group every helper is a no-op (rank 0 of 1), so one-process runs are unchanged.
"""

from __future__ import annotations

import itertools
import socket
import time
from functools import lru_cache
from typing import Any, Optional

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")
# evaluation results kept per user by RecBole's Collector (dim 0 = users); everything else is per dataset
PER_USER_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")


# ---- ranks ------------------------------------------------------------------------------------------------
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a one-process run): the process that writes checkpoints, caches and logs."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


_LEAVES = itertools.count()  # every rank leaves as often as the others, so the n-th leave has the same keys everywhere


def leave_process_group() -> None:
    """Tear the process group down together, rank 0 (the store's host) last; a no-op outside one.

    A barrier alone is not enough on gloo: a rank that returns from it and closes its sockets at once can reset
    a connection on which a peer still waits for the barrier's last message ("Connection reset by peer"). So,
    after the barrier, rank 0 releases the others through the store and tears down only when all of them have
    answered; they tear down only once released, when rank 0's last gloo operation is complete.
    """
    if not is_distributed():
        return
    dist.barrier()
    store, n, leave = dist.distributed_c10d._get_default_store(), world_size(), next(_LEAVES)
    if is_main():
        store.set(f"streamrec_released_{leave}", "1")
        while store.add(f"streamrec_left_{leave}", 0) < n - 1:
            time.sleep(0.01)
    else:
        store.wait([f"streamrec_released_{leave}"])
        store.add(f"streamrec_left_{leave}", 1)
    dist.destroy_process_group()


def sum_across_ranks(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` summed over the ranks (all-reduce on ``device``, which NCCL needs to be a GPU); same device back."""
    if not is_distributed():
        return tensor
    out = tensor.to(device)
    dist.all_reduce(out)
    return out.to(tensor.device)


# ---- process group ---------------------------------------------------------------------------------------
def resolve_backend(choice: Optional[str], device: torch.device) -> str:
    """``ddp_backend`` (auto | gloo | nccl) for ``device``: auto is NCCL on a GPU, gloo on a CPU."""
    from recbole_streamrec.errors import UserError

    choice = (choice or "auto").lower()
    if choice not in BACKENDS:
        raise UserError(f"ddp_backend must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if choice == "nccl" and device.type != "cuda":
        raise UserError("ddp_backend=nccl needs one GPU per process; on a CPU use gloo (or auto)")
    return choice


def init_process_group(backend: str, *, rank: int, world_size: int, init_method: str) -> None:
    """Join the process group (once per process: a second Config in the same rank reuses it)."""
    if not is_distributed():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, init_method=init_method)


def free_port() -> int:
    """A TCP port that is free on this machine now (rank 0 listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- evaluation: every user once, metrics over all of them -------------------------------------------------
def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of ``rank``'s contiguous block of ``n`` rows; blocks cover ``0..n-1`` once, sizes differ ≤ 1."""
    return n * rank // world_size, n * (rank + 1) // world_size


class ShardedEvalMixin:
    """Mix in before a RecBole evaluation loader: this rank iterates one contiguous block of the users, no padding."""

    def __init__(self, config, dataset, sampler, shuffle=False):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        start, end = shard_bounds(self.sample_size, rank(), world_size())
        self.shard_sampler = torch.utils.data.BatchSampler(range(start, end), self.step, drop_last=False)

    @property
    def _index_sampler(self):
        # torch's DataLoader draws its batches of indices from here (RecBole's DistributedSampler is bypassed)
        return getattr(self, "shard_sampler", None) or super()._index_sampler


@lru_cache(maxsize=None)
def _sharded_class(loader_class: type) -> type:
    return type(f"Sharded{loader_class.__name__}", (ShardedEvalMixin, loader_class), {})


def sharded_eval(config, loader):
    """``loader`` (a RecBole valid/test loader) rebuilt to shard its users without repeats; unchanged in one process."""
    if config["single_spec"] or loader is None:
        return loader
    return _sharded_class(type(loader))(config, loader._dataset, loader._sampler, shuffle=False)


class GatheredEvaluator:
    """RecBole's ``Evaluator`` over the per-user results of every rank (gathered in rank order).

    Ranks hold contiguous blocks of the users in order, so the gathered rows are those a one-process
    evaluation collects, in the same order, and every metric is computed once over all users.
    """

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def evaluate(self, struct):
        for key in PER_USER_KEYS:  # the same keys, in the same order, on every rank (one collective each)
            parts: list[Any] = [None] * world_size()
            dist.all_gather_object(parts, struct._data_dict.get(key))
            parts = [p for p in parts if p is not None]
            if parts:
                struct[key] = torch.cat(parts, dim=0)
        return self.evaluator.evaluate(struct)

    def __getattr__(self, name: str):
        return getattr(self.evaluator, name)
