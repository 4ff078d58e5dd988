"""Trainer for TIGER: RecBole's ``Trainer`` with weights-only checkpoints and resume points.

Training is plain cross-entropy, so RecBole's ``fit`` (early stopping on ``valid_metric``) is used as is;
``enable_amp: True`` turns on bf16 autocast on CPU (and fp16/bf16 on GPU) through RecBole itself.
"""

from __future__ import annotations

from recbole.trainer import Trainer

from recbole_streamrec.trainer.checkpoint import SafeCheckpointMixin


class TIGERTrainer(SafeCheckpointMixin, Trainer):
    """RecBole ``Trainer`` + :class:`SafeCheckpointMixin`."""
