"""Shared by the benchmark scripts: the paper's Table 2 as data, machine facts, small report helpers, stubs to
build a generative model without a dataset (random unique semantic IDs), a child-process runner that measures
wall time and peak memory, and the two functions ``bench/table2.py`` runs inside its child processes
(building the semantic IDs once; timing a test pass of a finished run)."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
METRIC_LABELS = {"recall@5": "R@5", "recall@10": "R@10", "ndcg@5": "N@5", "ndcg@10": "N@10"}

# STREAM-Rec paper, Table 2 (test split, full ranking, leave-one-out): (R@5, R@10, N@5, N@10).
# Rows are keyed like bench/table2.py's rows; STREAM-Rec has one row per training stage.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "Instruments": {
        "Caser": (0.0151, 0.0256, 0.0094, 0.0128),
        "GRU4Rec": (0.0230, 0.0353, 0.0152, 0.0191),
        "SASRec": (0.0352, 0.0556, 0.0220, 0.0286),
        "BERT4Rec": (0.0257, 0.0414, 0.0162, 0.0212),
        "TIGER": (0.0333, 0.0532, 0.0215, 0.0279),
        "STREAMRec-PT": (0.0218, 0.0316, 0.0139, 0.0170),
        "STREAMRec-SFT": (0.0367, 0.0562, 0.0244, 0.0307),
        "STREAMRec-RL": (0.0398, 0.0608, 0.0261, 0.0329),
    },
    "Scientific": {
        "Caser": (0.0098, 0.0167, 0.0062, 0.0085),
        "GRU4Rec": (0.0166, 0.0251, 0.0116, 0.0143),
        "SASRec": (0.0255, 0.0384, 0.0158, 0.0200),
        "BERT4Rec": (0.0170, 0.0277, 0.0106, 0.0141),
        "TIGER": (0.0240, 0.0382, 0.0153, 0.0199),
        "STREAMRec-PT": (0.0196, 0.0315, 0.0124, 0.0162),
        "STREAMRec-SFT": (0.0249, 0.0390, 0.0159, 0.0204),
        "STREAMRec-RL": (0.0264, 0.0424, 0.0169, 0.0221),
    },
}

# Which paper column a dataset under ../shared/data corresponds to, and how comparable it is
# (numbers from ../shared/data/README.md and the paper's Table 1).
PAPER_COLUMN: dict[str, tuple[str, str]] = {
    "amazon2023-instruments": (
        "Instruments",
        "same interaction set as the paper (57k users, 24,587 items); item ids are anonymous, so semantic IDs "
        "come from collaborative vectors, not text as in the paper: ID-based baselines compare directly",
    ),
    "amazon2018-scientific": (
        "Scientific",
        "a different 5-core preparation (8,317 users, 4,344 items) from the paper's (50,985 sequences, "
        "25,848 items): the paper column is context, not a target",
    ),
}


def paper_value(dataset: str, row: str, metric: str = "ndcg@10",
                column: Optional[str] = None) -> Optional[float]:
    """The paper's number for ``row`` on ``dataset`` (or on the explicit paper ``column``); None if absent."""
    column = column or PAPER_COLUMN.get(dataset, (None, ""))[0]
    values = PAPER_TABLE2.get(column or "", {}).get(row)
    return None if values is None else values[METRICS.index(metric)]


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores, torch version and GPU name (if any) of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']} ({info['cores']} cores){gpu}, torch {info['torch']}, Python {info['python']}"


def replace_marked_block(text: str, begin: str, end: str, new: str, path: Any) -> str:
    """``text`` with its one ``begin`` … ``end`` block (the markers included) replaced by ``new``; a text without
    exactly one of each marker, in that order, exits with a one-line error naming ``path``."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(end) < text.index(begin):
        sys.exit(f"{path}: no {begin} … {end} block to replace (expected exactly one)")
    head, rest = text.split(begin)
    return head + new + rest.split(end, 1)[1]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Optional[str] = None) -> str:
    """A GitHub markdown table; ``align`` is one character per column (``l`` or ``r``), default all left."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_seconds(seconds: Optional[float]) -> str:
    """``93`` → ``1m33s``, ``5400`` → ``1h30m``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def logged_seconds(log_text: str) -> float:
    """Sum of RecBole's ``training [time: …s`` and ``evaluating [time: …s`` in one run log's text."""
    return sum(float(m) for m in re.findall(r"(?:training|evaluating) \[time: ([0-9.]+)s", log_text))


def fmt_number(value: Optional[float], digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- models without a dataset (inference benchmarks) ------------------------------------------------
class StubConfig(dict):
    """Just enough of a RecBole ``Config`` for the models' constructors (missing keys read as None)."""

    def __missing__(self, key: str) -> None:
        return None


class StubCatalogue:
    """Stands in for the RecBole dataset: the constructors only ask it for the number of items."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field: str) -> int:
        return self.n_items


def synthetic_codes(n_items: int, n_levels: int, codebook_size: int, seed: int) -> np.ndarray:
    """``[n_items + 1, n_levels]`` random unique code tuples (row 0 = padding)."""
    rng = np.random.default_rng(seed)
    codes: set[tuple[int, ...]] = set()
    while len(codes) < n_items:
        codes.update(map(tuple, rng.integers(0, codebook_size, size=(n_items - len(codes), n_levels)).tolist()))
    out = np.zeros((n_items + 1, n_levels), dtype=np.int64)
    out[1:] = rng.permutation(np.array(sorted(codes), dtype=np.int64))
    return out

# ---- running a child process: wall time and peak memory -------------------------------------------------
HEARTBEAT_S = 10.0
def _die_with_parent() -> None:
    try:  # Linux: a killed bench takes its run down too, so a rerun never races an orphan
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(cmd: list[str], log: Path, ledger: Path, phase: str, threads: Optional[int]) -> dict[str, Any]:
    """Run ``cmd`` (output appended to ``log``); returns the attempt: seconds, exit code, peak RSS.

    The attempt is also written to ``ledger`` every ``HEARTBEAT_S`` seconds, so a bench killed mid-run still
    counts the time the run spent before the kill when it is resumed.
    """
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    attempts = json.loads(ledger.read_text()) if ledger.is_file() else []
    attempt = {"phase": phase, "started": datetime.now().isoformat(timespec="seconds"), "seconds": 0.0,
               "rc": None, "peak_rss_mb": None}
    attempts.append(attempt)
    start, beat = time.perf_counter(), 0.0
    with log.open("a") as out:
        out.write(f"\n### {attempt['started']} {phase}: {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
        ledger.write_text(json.dumps(attempts, indent=1))
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                attempt["seconds"] = time.perf_counter() - start
                if pid:
                    proc.returncode = attempt["rc"] = os.waitstatus_to_exitcode(status)
                    attempt["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
                    break
                if attempt["seconds"] - beat >= HEARTBEAT_S:
                    beat = attempt["seconds"]
                    ledger.write_text(json.dumps(attempts, indent=1))
                time.sleep(0.5)
        finally:
            ledger.write_text(json.dumps(attempts, indent=1))
    return attempt

# ---- child-process entry points of bench/table2.py (run as ``python -c "…; _common.<entry>()" --key=value …``;
# RecBole's Config reads the same --key=value overrides from sys.argv as the training run did) ----------------
CONFIG_KEYS = ("device", "learning_rate", "pt_learning_rate", "sft_learning_rate", "rl_learning_rate", "epochs",
               "train_batch_size", "eval_batch_size", "d_model", "num_layers", "stages", "reasoning_steps",
               "inference_reasoning_steps", "beam_size", "item_vector_source")


def child_prepare() -> None:
    """Child entry: load the data and build the model once, so item vectors, semantic IDs and the
    neighbour table are computed and cached before any timed run."""
    from recbole.utils import init_logger, init_seed

    from recbole_streamrec.config import Config
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.utils import get_model

    cli, _ = _child_parser().parse_known_args(sys.argv[1:])
    start = time.perf_counter()
    config = Config(model=cli.model, dataset=cli.dataset, config_file_list=_files(cli.config_files))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)  # item vectors / RQ-VAE / neighbours report their progress to the log
    _, train_data, _, _ = load_data(config)
    get_model(config["model"])(config, train_data._dataset)
    Path(cli.output).write_text(json.dumps({"seconds": time.perf_counter() - start, "model": cli.model}))


def child_time_eval() -> None:
    """Child entry: load the best checkpoint(s) of a finished run and time one test pass each.

    ``trainer.evaluate(test_data)`` is timed after the weights are loaded; STREAM-Rec is timed once per
    stage (the stage decides the inference prefix). The test metrics are kept to check them against the run's.
    """
    import torch
    from recbole.utils import init_seed

    from recbole_streamrec.config import Config
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.trainer.checkpoint import checkpoint_name, load_checkpoint, restore_model
    from recbole_streamrec.utils import get_model, get_trainer

    cli, _ = _child_parser().parse_known_args(sys.argv[1:])
    config = Config(model=cli.model, dataset=cli.dataset, config_file_list=_files(cli.config_files))
    init_seed(config["seed"], config["reproducibility"])
    _, train_data, _, test_data = load_data(config)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    users = len(test_data._dataset)
    stages = list(config["stages"]) if hasattr(model, "set_stage") else [None]
    passes = {}
    for stage in stages:
        path = checkpoint_name(config, f"-{stage}") if stage else trainer.saved_model_file
        restore_model(model, load_checkpoint(path, config["device"]))
        if stage:
            model.set_stage(stage)
        start = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        seconds = time.perf_counter() - start
        passes[stage or "best"] = {"checkpoint": path, "seconds": seconds, "users": users,
                                   "users_per_second": users / seconds,
                                   "test_result": {k: float(v) for k, v in result.items()}}
    out = {"passes": passes, "config": {k: _plain(config[k]) for k in CONFIG_KEYS}, "machine": machine_info()}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(cli.output).write_text(json.dumps(out, indent=2))


def _child_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--dataset", "--config_files", "--output"):
        parser.add_argument(name, default=None)
    return parser


def _files(value: Optional[str]) -> Optional[list[str]]:
    return value.replace(",", " ").split() if value else None


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, list, type(None))) else str(value)
