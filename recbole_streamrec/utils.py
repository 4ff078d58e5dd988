"""Model and trainer look-up: the plugin first, RecBole as the fallback."""

from __future__ import annotations

import importlib

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

_PLUGIN_MODELS = {"TIGER": "tiger", "STREAMRec": "streamrec"}
_PLUGIN_TRAINERS = {"TIGER": "TIGERTrainer", "STREAMRec": "STREAMRecTrainer"}


def get_model(model_name: str) -> type:
    """Return the model class: ``recbole_streamrec.model.<module>`` first, then RecBole's models."""
    if model_name in _PLUGIN_MODELS:
        module = importlib.import_module(f"recbole_streamrec.model.{_PLUGIN_MODELS[model_name]}")
        return getattr(module, model_name)
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name: str) -> type:
    """Return the trainer class; RecBole's trainers come back with weights-only checkpoints."""
    trainer_module = importlib.import_module("recbole_streamrec.trainer")
    if model_name in _PLUGIN_TRAINERS:
        return getattr(trainer_module, _PLUGIN_TRAINERS[model_name])
    return trainer_module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))
