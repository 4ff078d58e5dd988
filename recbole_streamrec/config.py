"""RecBole ``Config`` that also reads this plugin's ``properties/`` (the RecBole-GNN pattern).

Order of precedence, lowest first: RecBole's own defaults → ``properties/overall.yaml`` →
``properties/generative.yaml`` (TIGER and STREAM-Rec only) → ``properties/model/<Model>.yaml`` → ``properties/dataset/<dataset>.yaml`` → ``--config_files`` →
``config_dict`` → command line. Baselines (SASRec, BERT4Rec, …) therefore see the very same split,
evaluator and data settings as TIGER and STREAM-Rec.
"""

from __future__ import annotations

import os
from pathlib import Path

from recbole.config import Config as RecBoleConfig

from recbole_streamrec.utils import get_model

PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"


class Config(RecBoleConfig):
    """RecBole config with the plugin's property files layered on top of RecBole's."""

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            try:
                model = self.external_config_dict["model"]
            except KeyError:
                raise KeyError("model must be given: --model=..., a config file or config_dict") from None
        if isinstance(model, str):
            final_model, final_model_class = model, get_model(model)
        else:
            final_model, final_model_class = model.__name__, model
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", "ml-100k")
        return final_model, final_model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        if not PROPERTIES_DIR.is_dir():
            raise FileNotFoundError(
                f"property files not found at {PROPERTIES_DIR}; install the package with `pip install -e .` "
                "from a checkout so that properties/ sits beside recbole_streamrec/"
            )
        generative = getattr(model_class, "uses_semantic_ids", False)
        for file in (
            PROPERTIES_DIR / "overall.yaml",
            *([PROPERTIES_DIR / "generative.yaml"] if generative else []),
            PROPERTIES_DIR / "model" / f"{model}.yaml",
            PROPERTIES_DIR / "dataset" / f"{dataset}.yaml",
        ):
            if file.is_file():
                loaded = self._update_internal_config_dict(str(file))
                if file.parent.name == "dataset" and loaded:
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        # RecBole resolves data_path relative to the working directory; keep a relative
        # ``dataset/`` working from any directory by resolving it against the checkout too.
        data_path = self.final_config_dict.get("data_path")
        if data_path and not os.path.isabs(data_path) and not os.path.isdir(data_path):
            candidate = PROPERTIES_DIR.parent / data_path
            if candidate.is_dir():
                self.final_config_dict["data_path"] = str(candidate)
        super()._set_default_parameters()
