"""Trainer for TIGER: RecBole's ``Trainer`` with weights-only checkpoints, resume points and the training recipe.

Training is plain cross-entropy, so RecBole's ``fit`` (early stopping on ``valid_metric``) is used as is.
:class:`RecipeMixin` adds weight-decay groups and the warm-up/decay schedule; ``precision`` (resolved at start-up
into RecBole's ``enable_amp``) chooses bf16 autocast only where the hardware computes bf16 natively.
``init_checkpoint`` starts a new run from another run's weights (a warm restart with a fresh schedule).
"""

from __future__ import annotations

from recbole.trainer import Trainer

from recbole_streamrec.trainer.checkpoint import SafeCheckpointMixin
from recbole_streamrec.trainer.recipe import RecipeMixin


class TIGERTrainer(RecipeMixin, SafeCheckpointMixin, Trainer):
    """RecBole ``Trainer`` + :class:`RecipeMixin` + :class:`SafeCheckpointMixin`."""

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.log_recipe()
        if self.config["init_checkpoint"] and self.start_epoch == 0:  # a resumed run keeps its own weights
            self.load_initial_weights(self.config["init_checkpoint"])
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
