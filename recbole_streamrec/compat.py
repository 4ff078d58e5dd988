"""Compatibility with RecBole 1.2.1 on current numpy / torch — every shim lives here.

RecBole 1.2.1 predates numpy 2 and torch 2.6. This module is imported (and :func:`apply` run) by
``recbole_streamrec/__init__.py`` before anything touches RecBole, so each shim is applied exactly
once and in one place:

* **numpy 2 aliases** — RecBole uses ``np.float_``, ``np.float``, ``np.int``, … which numpy 2 removed.
  We re-add the few aliases RecBole needs, pointing at the numpy-2 types they always meant. Existing
  attributes are never overwritten.
* **anomaly detection** — ``recbole/model/sequential_recommender/sine.py`` calls
  ``torch.autograd.set_detect_anomaly(True)`` at import, which roughly halves training speed for every
  model. We import RecBole's sequential models once and switch it off again.
* **checkpoints** — torch >= 2.6 loads with ``weights_only=True``; RecBole pickles its whole ``Config``
  into each checkpoint, so its own files no longer load. Our trainers (and the baselines run through
  ``run_recbole_streamrec.py``) write checkpoints made only of tensors and plain Python values
  (see :mod:`recbole_streamrec.trainer.checkpoint`), which load with ``weights_only=True``.
  :func:`load_legacy_checkpoint` opens an old RecBole file you trust, explicitly.
* **no ray** — ``recbole.quick_start`` imports ray (and ray needs ``setuptools<81``); nothing in this
  package imports ``recbole.quick_start``.
"""

from __future__ import annotations

import numpy as np

_NUMPY_ALIASES = {
    "float_": np.float64,
    "float": float,
    "int": int,
    "bool": bool,
    "object": object,
    "str": str,
    "long": int,
    "complex_": np.complex128,
    "unicode_": np.str_,
}

_applied = False


def apply() -> None:
    """Apply every shim once (idempotent)."""
    global _applied
    if _applied:
        return
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)

    import torch

    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's set_detect_anomaly(True))

    torch.autograd.set_detect_anomaly(False)
    _applied = True


def load_legacy_checkpoint(path: str, map_location: str = "cpu") -> dict:
    """Load a checkpoint written by plain RecBole (it pickles a ``Config``): only for files you trust."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)
