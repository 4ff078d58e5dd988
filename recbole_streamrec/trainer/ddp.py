"""What a RecBole ``Trainer`` needs to run data-parallel here, on a CPU (gloo) as on GPUs (NCCL).

RecBole's own path is kept: its training loop calls ``set_reduce_hook`` / ``sync_grad_loss`` every step, so the
``DistributedDataParallel`` wrapper averages the gradients of all ranks. :class:`DDPMixin` changes only:

* the wrapper: RecBole builds it with ``device_ids=[local_rank]``, which a CPU model refuses; here it gets the
  GPU index on a GPU and none on a CPU, and the generative models' constant tables (semantic IDs, neighbours)
  are not broadcast again every step;
* evaluation: :class:`~recbole_streamrec.distributed.GatheredEvaluator` computes the metrics over the gathered
  per-user results, so RecBole's ``_map_reduce`` (a mean of per-rank means) is not needed;
* the loss of length-bucketed batches (:mod:`recbole_streamrec.data.batching`): every rank takes a slice of the
  same global batch, and each slice's mean loss is weighted by its share of the batch
  (:func:`~recbole_streamrec.data.batching.shard_weight`), so the averaged gradient is the gradient of the global
  batch's mean loss, as in one process;
* a tensorboard writer on rank 0 only (RecBole opens one in every process);
* the checkpoint directory, made before RecBole's check-then-create ``ensure_dir``, which two ranks can race
  (both see no directory, one then fails with ``FileExistsError``).
"""

from __future__ import annotations

import inspect
import os
from contextlib import nullcontext
from unittest import mock

import recbole.trainer.trainer as recbole_trainer
import torch
from torch.nn.parallel import DistributedDataParallel

from recbole_streamrec.data.batching import shard_weight
from recbole_streamrec.distributed import GatheredEvaluator, is_main, rank


# torch >= 2.13 renamed DDP's per-forward buffer broadcast (``broadcast_buffers`` still works, with a warning)
_SYNC_BUFFERS = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                 else "broadcast_buffers")


class _NoTensorboard:
    """A tensorboard writer that writes nothing (ranks other than 0)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def scale_loss(losses, weight: float):
    """A loss or a tuple of loss parts times ``weight``."""
    return tuple(loss * weight for loss in losses) if isinstance(losses, tuple) else losses * weight


class DDPMixin:
    """Mix in before a RecBole ``Trainer`` (``SafeCheckpointMixin`` does): DDP on any device, exact evaluation."""

    def __init__(self, config, model):
        self.distributed = not config["single_spec"]
        if not self.distributed:
            super().__init__(config, model)
            return
        config["single_spec"] = True  # RecBole's AbstractTrainer would build the CPU-refused wrapper
        # RecBole's ensure_dir checks, then creates: two ranks can both pass the check and one then fails
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        quiet = mock.patch.object(recbole_trainer, "get_tensorboard", lambda logger: _NoTensorboard())
        try:
            with nullcontext() if is_main() else quiet:
                super().__init__(config, model)
        finally:
            config["single_spec"] = False
        device = config["device"]
        if device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # as RecBole does
        # the generative models' buffers are constant tables: synchronised once here, not again at every step
        sync_buffers = {_SYNC_BUFFERS: not getattr(self.model, "uses_semantic_ids", False)}
        self.distributed_model = DistributedDataParallel(
            self.model, device_ids=[device.index] if device.type == "cuda" else None, **sync_buffers)
        self.evaluator = GatheredEvaluator(self.evaluator)

    def _map_reduce(self, result, num_sample):
        return result  # the evaluator already saw every rank's users (GatheredEvaluator)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        sampler = getattr(train_data, "bucket_sampler", None)
        if self.distributed and sampler is not None:
            base = loss_func or self.model.calculate_loss

            def loss_func(interaction):  # this rank's slice of the global batch, weighted by its share
                return scale_loss(base(interaction), shard_weight(sampler.shard_sizes, rank()))

        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
