"""One run: config → RecBole dataset and split → model → trainer → valid/test results."""

from __future__ import annotations

import logging
import os
from logging import getLogger
from typing import Any, Optional

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_streamrec.config import Config
from recbole_streamrec.data.atomic_files import check_atomic_files, check_split
from recbole_streamrec.data.batching import bucketed
from recbole_streamrec.trainer.recipe import apply_precision, apply_threads
from recbole_streamrec.utils import get_model, get_trainer


def load_data(config: Config):
    """RecBole's own dataset loading and leave-one-out split (training batches length-bucketed where configured)."""
    check_atomic_files(config)  # bad rows and headers: one line naming the file and line, before RecBole reads it
    dataset = create_dataset(config)
    getLogger().info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check_split(config, dataset, train_data, valid_data, test_data)
    return dataset, bucketed(config, train_data), valid_data, test_data


def run(
    model: str,
    dataset: str = "ml-100k",
    config_file_list: Optional[list[str]] = None,
    config_dict: Optional[dict[str, Any]] = None,
    saved: bool = True,
    resume: bool = False,
    eval_only: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` and evaluate it; returns the valid/test results (and per-stage ones).

    ``eval_only`` skips training and evaluates the run's best checkpoint as it stands (e.g. of a run that
    is still going or was stopped).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger("recbole_streamrec").setLevel(logging.INFO)
    logger = getLogger()
    logger.info(config)
    logger.info(apply_threads(config["threads"]))
    if config["precision"] is not None:  # the generative models' key; baselines keep RecBole's enable_amp
        logger.info(apply_precision(config))
    _, train_data, valid_data, test_data = load_data(config)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if hasattr(trainer, "test_data"):
        trainer.test_data = test_data  # staged trainers also test after each stage
    if resume:
        resume_file = trainer.last_checkpoint_file
        if os.path.isfile(resume_file) or hasattr(trainer, "stage_results"):  # staged: one file per stage
            trainer.resume_checkpoint(resume_file)
        else:
            logger.warning(f"--resume: no checkpoint at {resume_file}; starting from scratch")

    if eval_only:
        best_valid_result = trainer.evaluate(valid_data, load_best_model=True, show_progress=config["show_progress"])
        best_valid_score = best_valid_result[config["valid_metric"].lower()]
    else:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "model": config["model"], "dataset": config["dataset"],
        "best_valid_score": best_valid_score, "valid_result": best_valid_result, "test_result": test_result,
    }
    if hasattr(trainer, "stage_results"):
        result["stage_results"] = trainer.stage_results
    return result
