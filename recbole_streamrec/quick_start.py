"""One run: config → RecBole dataset and split → model → trainer → valid/test results.

With ``nproc: N`` > 1 the run is data-parallel: :func:`run` starts N processes through
``torch.multiprocessing.spawn`` (RecBole's ``run_recboles`` pattern), each runs :func:`run_config` as one rank, and
rank 0's results come back. Under ``torchrun`` each process it starts is already a rank.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from logging import getLogger
from typing import Any, Optional

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_streamrec.config import Config
from recbole_streamrec.data.atomic_files import check_atomic_files, check_split
from recbole_streamrec.data.batching import bucketed, length_sorted
from recbole_streamrec.distributed import free_port, is_distributed, is_main, leave_process_group, sharded_eval
from recbole_streamrec.errors import UserError
from recbole_streamrec.popularity import floor_line, popularity_floor
from recbole_streamrec.trainer.checkpoint import plain_results
from recbole_streamrec.trainer.recipe import apply_precision, apply_threads, physical_cores
from recbole_streamrec.user_ranks import TopkRecorder, check_one_row_per_user, write_ranks
from recbole_streamrec.utils import get_model, get_trainer


def load_data(config: Config):
    """RecBole's own dataset loading and leave-one-out split (batches of similar history length where configured)."""
    check_atomic_files(config)  # bad rows and headers: one line naming the file and line, before RecBole reads it
    dataset = create_dataset(config)
    getLogger().info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check_split(config, dataset, train_data, valid_data, test_data)
    valid_data, test_data = length_sorted(config, valid_data), length_sorted(config, test_data)
    # under DDP each rank trains on its slice of every batch and evaluates its own block of users
    return dataset, bucketed(config, train_data), sharded_eval(config, valid_data), sharded_eval(config, test_data)


def run(
    model: str,
    dataset: str = "ml-100k",
    config_file_list: Optional[list[str]] = None,
    config_dict: Optional[dict[str, Any]] = None,
    saved: bool = True,
    resume: bool = False,
    eval_only: bool = False,
    rank_file: Optional[str] = None,
    valid_rank_file: Optional[str] = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` and evaluate it; returns the valid/test results (and per-stage ones).

    ``eval_only`` skips training and evaluates the run's best checkpoint as it stands (e.g. of a run that
    is still going or was stopped). ``rank_file``: also write each test user's rank of the held-out item there
    (:mod:`recbole_streamrec.user_ranks`; one process only); ``valid_rank_file``: the same for the validation
    item, from the best checkpoint. With ``nproc`` > 1 it starts one process per rank
    and returns rank 0's results; in a rank other than 0 (under ``torchrun``) it returns None.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    for flag, path in (("--rank_file", rank_file), ("--valid_rank_file", valid_rank_file)):
        if path and ((config["nproc"] or 1) > 1 or not config["single_spec"]):
            raise UserError(f"{flag}: needs a one-process run (not nproc > 1 or torchrun)")
    if (config["nproc"] or 1) > 1 and config["single_spec"]:  # the launching process: one worker per rank
        return launch(config, dict(model=model, dataset=dataset, config_file_list=config_file_list,
                                   config_dict=config_dict, saved=saved, resume=resume, eval_only=eval_only))
    try:
        result = run_config(config, saved=saved, resume=resume, eval_only=eval_only, rank_file=rank_file,
                            valid_rank_file=valid_rank_file)
    except BaseException:
        if is_distributed():
            torch.distributed.destroy_process_group()
        raise
    main = is_main()
    leave_process_group()  # together: a rank that tears gloo down while a peer still talks to it aborts that peer
    return result if main else None


def launch(config: Config, run_kwargs: dict[str, Any]) -> Optional[dict[str, Any]]:
    """``run(**run_kwargs)`` in ``nproc`` processes (``torch.multiprocessing.spawn``); returns rank 0's results."""
    import torch.multiprocessing as mp

    nproc = config["nproc"]
    run_kwargs["config_dict"] = {
        **(run_kwargs["config_dict"] or {}), "nproc": nproc, "world_size": config["world_size"] or nproc,
        "ip": config["ip"] or "localhost", "port": config["port"] or free_port(), "offset": config["offset"] or 0,
    }
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_run_rank, args=(run_kwargs, queue), nprocs=nproc, join=True)
    except mp.ProcessRaisedException:
        error = None if queue.empty() else queue.get()
        if isinstance(error, UserError):  # one line for the user, as in a one-process run
            raise error from None
        raise
    return None if queue.empty() else queue.get()


def _run_rank(local_rank: int, run_kwargs: dict[str, Any], queue) -> None:
    """One spawned worker: ``run`` as rank ``offset + local_rank``; this machine's first worker reports back."""
    run_kwargs["config_dict"]["local_rank"] = local_rank
    try:
        result = run(**run_kwargs)
    except UserError as err:
        if local_rank == 0:
            queue.put(err)
        raise
    except Exception:
        # torch reports only the first rank to exit; the one that failed first may be another (a rank whose
        # peer died sees only "Connection reset by peer"), so every rank says what stopped it
        rank = (run_kwargs["config_dict"].get("offset") or 0) + local_rank
        print(f"rank {rank} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        raise
    if local_rank == 0:
        queue.put(result)
    # The work is done and reported: leave without the interpreter's teardown, where a C++ thread still
    # attached to torch's distributed runtime can abort the worker ("terminate called without an active
    # exception") and turn a finished run into a failed one.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_config(config: Config, saved: bool = True, resume: bool = False, eval_only: bool = False,
               rank_file: Optional[str] = None, valid_rank_file: Optional[str] = None) -> dict[str, Any]:
    """:func:`run` for a built ``config`` in this process (one rank of a data-parallel run, or the only one)."""
    start_process(config)
    _, train_data, valid_data, test_data = load_data(config)
    if rank_file:
        check_one_row_per_user(test_data, "--rank_file", "test")
    if valid_rank_file:
        check_one_row_per_user(valid_data, "--valid_rank_file", "validation")
    trainer = build_trainer(config, train_data, test_data, resume)
    logger = getLogger()

    recorder = None
    if rank_file or valid_rank_file:
        recorder = trainer.evaluator = TopkRecorder(trainer.evaluator)
    if eval_only:
        best_valid_result = trainer.evaluate(valid_data, load_best_model=True, show_progress=config["show_progress"])
        best_valid_score = best_valid_result[config["valid_metric"].lower()]
    else:
        start = time.time()
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        train_seconds = time.time() - start
        if valid_rank_file:  # the ranks of the checkpoint that is tested, not of the last epoch
            trainer.evaluate(valid_data, load_best_model=saved, show_progress=config["show_progress"])
    if valid_rank_file:
        users = write_ranks(valid_rank_file, valid_data, recorder.topk)
        logger.info(f"each validation user's rank of the held-out item: {valid_rank_file} ({users} users)")
    finished = getattr(trainer, "stage_results", {}).get(getattr(trainer, "stage", None), {})
    if not eval_only and saved and "test" in finished and not rank_file:  # tested with its last stage
        test_result = finished["test"]
    else:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    if rank_file:
        users = write_ranks(rank_file, test_data, recorder.topk)
        logger.info(f"each test user's rank of the held-out item: {rank_file} ({users} users)")
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    floor = None
    # generative models: is the run above "most popular first"? (one process only: popularity_floor's plain
    # RecBole Trainer cannot run under DDP on a CPU)
    if config["compare_with_pop"] and test_result and config["single_spec"]:
        floor = popularity_floor(config, train_data, test_data)
        logger.info(set_color("vs popularity", "yellow") + ": "
                    + floor_line(plain_results(test_result), floor, config["valid_metric"].lower()))
    result = {
        "model": config["model"], "dataset": config["dataset"],
        "best_valid_score": best_valid_score, "valid_result": best_valid_result, "test_result": test_result,
    }
    if not eval_only:
        result["train_seconds"] = train_seconds  # wall clock of fit: training and validation, all stages
    if floor is not None:
        result["pop_test_result"] = floor
    return {**result, **training_facts(trainer, trained=not eval_only)}


def start_process(config: Config) -> None:
    """Seed, logging (rank 0 writes the log), torch threads and precision; the last two say what they chose."""
    init_seed(config["seed"], config["reproducibility"])
    if is_main():
        init_logger(config)
        logging.getLogger("recbole_streamrec").setLevel(logging.INFO)
    else:  # only rank 0 writes the log; the other ranks report errors
        logging.basicConfig(level=logging.ERROR)
        logging.getLogger("recbole_streamrec").setLevel(logging.ERROR)
    logger = getLogger()
    logger.info(config)
    threads = config["threads"]
    if threads is None and not config["single_spec"] and config["device"].type == "cpu":
        threads = max(1, physical_cores() // (config["nproc"] or 1))  # the machine's cores shared by its ranks
    logger.info(apply_threads(threads))
    if config["precision"] is not None:  # the generative models' key; baselines keep RecBole's enable_amp
        logger.info(apply_precision(config))


def build_trainer(config: Config, train_data, test_data, resume: bool):
    """The model (seeded per rank) and its trainer; with ``resume``, continued from the run's last checkpoint."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    getLogger().info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if hasattr(trainer, "test_data"):
        trainer.test_data = test_data  # staged trainers also test after each stage
    if resume:
        resume_file = trainer.last_checkpoint_file
        if os.path.isfile(resume_file) or hasattr(trainer, "stage_results"):  # staged: one file per stage
            trainer.resume_checkpoint(resume_file)
        else:
            getLogger().warning(f"--resume: no checkpoint at {resume_file}; starting from scratch")
    return trainer


def training_facts(trainer, trained: bool) -> dict[str, Any]:
    """A staged trainer's per-stage results, and the training clock (no validation) of a run that ``trained``:
    ``training_seconds``, what ``time_budget`` counts, and ``stage_training_seconds`` per stage."""
    facts: dict[str, Any] = {}
    if hasattr(trainer, "stage_results"):
        facts["stage_results"] = trainer.stage_results
    if trained and hasattr(trainer, "trained_seconds"):
        stages = getattr(trainer, "stage_seconds", None)
        facts["training_seconds"] = round(sum(stages.values()) if stages else trainer.trained_seconds, 3)
        if stages:
            facts["stage_training_seconds"] = {stage: round(s, 3) for stage, s in stages.items()}
    return facts
