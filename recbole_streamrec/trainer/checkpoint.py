"""Checkpoints that load with ``torch.load(weights_only=True)``, and resuming a stopped run.

RecBole pickles its whole ``Config`` into each checkpoint; under torch ≥ 2.6 such a file no longer loads
by default, and unpickling arbitrary objects is unsafe anyway. :class:`SafeCheckpointMixin` writes only
tensors and plain values (state dicts, epoch, early-stopping state, the model and dataset names), names
the files so a reader knows what made them, and keeps two of them:

* ``<checkpoint_dir>/<model>-<dataset>[-<tag>].pth`` — the best model so far (what ``evaluate`` loads);
* the same name with ``-last`` — written at the start of every epoch, so a run stopped mid-training
  resumes from the last finished epoch with ``resume_checkpoint`` (``--resume`` on the command line);
  at the end of ``fit`` it is marked finished, and resuming a finished run keeps its best model.

Under DDP only rank 0 writes; every rank calls :func:`save_checkpoint` at the same point and waits there until the
file is written, so any rank may read it next (the ranks' weights are the same: their gradients are averaged).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from recbole.utils import set_color

from recbole_streamrec.distributed import barrier, is_main
from recbole_streamrec.trainer.ddp import DDPMixin


def checkpoint_name(config, suffix: str = "") -> str:
    tag = f"-{config['checkpoint_tag']}" if config["checkpoint_tag"] else ""
    return os.path.join(config["checkpoint_dir"], f"{config['model']}-{config['dataset']}{tag}{suffix}.pth")


def plain_results(result: Any) -> Any:
    """Evaluation results as plain floats (numpy scalars do not load under ``weights_only``)."""
    if result is None:
        return None
    return {str(k): float(v) for k, v in dict(result).items()}


class SafeCheckpointMixin(DDPMixin):
    """Mix in before a RecBole ``Trainer`` subclass: weights-only checkpoints plus per-epoch resume points."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = checkpoint_name(config)
        self.last_checkpoint_file = checkpoint_name(config, "-last")

    def _checkpoint_state(self, epoch: int) -> dict:
        return {
            "model": self.config["model"], "dataset": self.config["dataset"], "epoch": epoch,
            "cur_step": self.cur_step, "best_valid_score": float(self.best_valid_score),
            "best_valid_result": plain_results(self.best_valid_result),
            "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            # what a model keeps outside its state dict (e.g. Pop's max_cnt), as RecBole's own checkpoints do
            "other_parameter": self.model.other_parameter(),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(self._checkpoint_state(epoch), path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._save_resume_point(epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _save_resume_point(self, epoch_idx: int) -> None:
        """Everything before ``epoch_idx`` (training, validation, early stopping) is final: a resume point."""
        self._save_checkpoint(epoch_idx - 1, verbose=False, saved_model_file=self.last_checkpoint_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        # mark the run finished, so --resume on it neither retrains the last epoch nor runs past early stopping
        state = {**self._checkpoint_state(self.epochs - 1), "finished": True}
        save_checkpoint(state, self.last_checkpoint_file)
        return result

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, self.device)
        if checkpoint["model"] != self.config["model"]:
            raise ValueError(f"{resume_file} holds a {checkpoint['model']} model, not {self.config['model']}")
        if checkpoint.get("finished") and os.path.isfile(self.saved_model_file):
            best = load_checkpoint(self.saved_model_file, self.device)
            checkpoint.update(state_dict=best["state_dict"], other_parameter=best.get("other_parameter"))
            self.logger.info(f"{resume_file}: that run had finished; keeping its best model")
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint["best_valid_result"]
        restore_model(self.model, checkpoint, resume_file)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.restore_training_state(checkpoint)
        self.logger.info(f"Checkpoint {resume_file} loaded. Resume training from epoch {self.start_epoch}")

    def load_initial_weights(self, path: str) -> str:
        """``init_checkpoint``: start from the weights of ``path`` (a run of the same model on the same semantic IDs).

        Only the weights are taken: the optimiser, the learning-rate schedule, the epoch counter and early
        stopping start afresh (a warm restart, or fine-tuning). A model that can start from another model's
        weights says how (``state_from_tiger``: STREAM-Rec from a trained TIGER). A file of another model, or of
        a model of another shape (another preset, other semantic IDs), is a one-line error naming ``path``.
        Returns the model name the file holds.
        """
        from recbole_streamrec.errors import UserError

        checkpoint = load_checkpoint(path, self.device)
        source = checkpoint.get("model")
        theirs = checkpoint["state_dict"]
        if source == "TIGER" and hasattr(self.model, "state_from_tiger"):
            try:
                theirs = self.model.state_from_tiger(theirs)
            except (KeyError, ValueError) as error:
                raise UserError(misfit(f"init_checkpoint {path}", error.args[0])) from None
        elif source != self.config["model"]:
            raise UserError(f"init_checkpoint {path} holds a {source} model, not {self.config['model']}")
        restore_model(self.model, {**checkpoint, "state_dict": theirs}, f"init_checkpoint {path}")  # checks the fit
        self.logger.info(f"initialised from {path} ({source}; weights only: optimiser, schedule and early "
                         "stopping start afresh)")
        return source

    def restore_training_state(self, checkpoint: dict) -> None:
        """What a subclass keeps beside the optimiser (e.g. the lr schedule's position), from the loaded checkpoint."""

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            path = model_file or self.saved_model_file
            restore_model(self.model, load_checkpoint(path, self.device), path)
            self.logger.info(f"Loading model structure and parameters from {path}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def first_mismatch(own: dict, theirs: dict) -> Optional[str]:
    """The first key of two state dicts that only one has or whose shapes differ; ``None`` when they fit."""
    wrong = sorted(set(own) ^ set(theirs)) or [key for key in own if own[key].shape != theirs[key].shape]
    return wrong[0] if wrong else None


def misfit(what: str, key: str) -> str:
    """The one-line error for a checkpoint ``what`` whose weights do not fit the model built from the config."""
    return (f"{what} does not fit this model (first mismatch: {key}); was it made with other T5 sizes, other "
            "semantic IDs or another recency_embedding?")


def restore_model(model: torch.nn.Module, checkpoint: dict, path: Optional[str] = None) -> None:
    """Load a checkpoint's weights and the attributes RecBole keeps beside them (``other_parameter``).

    Weights that do not fit the model (a key on one side only, another shape) are a one-line
    :class:`~recbole_streamrec.errors.UserError` naming ``path`` and the first such key.
    """
    from recbole_streamrec.errors import UserError

    wrong = first_mismatch(model.state_dict(), checkpoint["state_dict"])
    if wrong:
        raise UserError(misfit(path or "the checkpoint", wrong))
    model.load_state_dict(checkpoint["state_dict"])
    if checkpoint.get("other_parameter") is not None:
        model.load_other_parameter(checkpoint["other_parameter"])


def save_checkpoint(state: dict, path: str) -> None:
    """Write ``state`` to ``path`` through a temporary file: never a half-written checkpoint behind.

    Under DDP rank 0 writes and every rank waits until it has (all ranks call this at the same point).
    """
    if not is_main():
        barrier()
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    barrier()


def load_checkpoint(path: str, device: Any = "cpu") -> dict:
    """Load one of our checkpoints; nothing but tensors and plain values is unpickled.

    A missing, truncated, corrupt or unsafe file is a one-line :class:`~recbole_streamrec.errors.UserError`
    naming ``path``.
    """
    import pickle

    from recbole_streamrec.errors import MissingFileError, UserError

    if not os.path.isfile(path):
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise UserError(f"{path}: refused: the checkpoint holds pickled objects, not only tensors and plain "
                            "values (compat.load_legacy_checkpoint opens a RecBole file you trust)") from err
        failure: Exception = err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        failure = err
    reason = (str(failure).splitlines() or [type(failure).__name__])[0].split(". ")[0]
    raise UserError(f"{path}: not a readable checkpoint, truncated or corrupt (torch: {reason}); "
                    "if a killed run left it so, delete it and rerun") from failure


def with_safe_checkpoints(trainer_class: type) -> type:
    """``trainer_class`` (a RecBole trainer) with :class:`SafeCheckpointMixin` in front."""
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
