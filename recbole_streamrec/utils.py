"""Model and trainer look-up: the plugin first, RecBole as the fallback."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_streamrec.errors import UserError, did_you_mean

_PLUGIN_MODELS = {"TIGER": "tiger", "STREAMRec": "streamrec"}
_PLUGIN_TRAINERS = {"TIGER": "TIGERTrainer", "STREAMRec": "STREAMRecTrainer"}
_RECBOLE_PACKAGES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                     "knowledge_aware_recommender")
_EXLIB_MODELS = {"lightgbm": "LightGBM", "xgboost": "XGBoost"}  # need packages RecBole does not install


@functools.lru_cache(maxsize=1)
def recbole_models() -> dict[str, str]:
    """RecBole's models as ``{module name: class name}`` (``"sasrec": "SASRec"``), read from its packages.

    ``exlib_recommender`` is listed by file name only: importing it needs lightgbm and xgboost.
    """
    names: dict[str, str] = {}
    for package_name in _RECBOLE_PACKAGES:
        package = importlib.import_module(f"recbole.model.{package_name}")
        classes = {a.lower(): a for a in dir(package) if isinstance(getattr(package, a), type)}
        names.update({m.name: classes[m.name] for m in pkgutil.iter_modules(package.__path__) if m.name in classes})
    spec = importlib.util.find_spec("recbole.model.exlib_recommender")
    exlib = {m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)} if spec else set()
    names.update({m: c for m, c in _EXLIB_MODELS.items() if m in exlib})
    return names


def get_model(model_name: str) -> type:
    """Return the model class: ``recbole_streamrec.model.<module>`` first, then RecBole's models.

    An unknown name (e.g. the typo ``TIGRE``) is a :class:`UserError` naming it and its close matches.
    """
    if model_name in _PLUGIN_MODELS:
        module = importlib.import_module(f"recbole_streamrec.model.{_PLUGIN_MODELS[model_name]}")
        return getattr(module, model_name)
    known = recbole_models()
    if known.get(str(model_name).lower()) != model_name:
        choices = [*_PLUGIN_MODELS, *known.values()]
        raise UserError(
            f"--model: unknown model {model_name!r}{did_you_mean(str(model_name), choices)}. "
            f"Valid: this plugin's {', '.join(_PLUGIN_MODELS)}, or one of RecBole's {len(known)} models "
            "(e.g. SASRec, BERT4Rec, GRU4Rec, Caser, Pop); names are case-sensitive"
        )
    try:
        return recbole_get_model(model_name)
    except ModuleNotFoundError as err:  # the exlib models
        raise UserError(f"--model={model_name} needs the Python package {err.name!r}: pip install {err.name}") from err


def get_trainer(model_type, model_name: str) -> type:
    """Return the trainer class; RecBole's trainers come back with weights-only checkpoints."""
    trainer_module = importlib.import_module("recbole_streamrec.trainer")
    if model_name in _PLUGIN_TRAINERS:
        return getattr(trainer_module, _PLUGIN_TRAINERS[model_name])
    return trainer_module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))
