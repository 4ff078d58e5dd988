"""TIGER training throughput, data-parallel: 1 process against 2 (gloo on the CPU, one torch thread each), and
1 GPU when this machine has one. Every setting trains the same TIGER on the same data with the same global batch
(``train_batch_size``; under DDP each rank takes half of every batch) through the real run path
(``quick_start.run`` with ``nproc``), so the only difference is the number of processes.

    python bench/ddp_throughput.py --out docs/results/ddp_throughput            # the measurement
    python bench/ddp_throughput.py --quick --out /tmp/ddp_smoke                 # smoke test, well under a minute

The data is synthetic (``--users`` users, each walking a chain of ``--items`` items for 5–20 steps, written as
RecBole atomic files under ``<out>/data``), so no dataset has to be downloaded; the item vectors, semantic IDs
and the model size come from ``--config_files`` (default ``properties/quick.yaml``), built once before any timed
run. A *sample* is one training row (one history and its target); samples/s = epochs × training rows / the
wall-clock of ``fit`` (training only: ``eval_step: 0`` switches validation off). Writes
``<out>/ddp_throughput.json`` and ``<out>/ddp_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine_info, machine_line, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DATASET = "ddpbench"


def write_dataset(data_path: Path, users: int, items: int, seed: int) -> None:
    """``<data_path>/ddpbench/ddpbench.inter``: each user walks item ``j → j + 1 (+0..2)`` for 5–20 steps."""
    rng = np.random.default_rng(seed)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(users):
        item, length = int(rng.integers(items)), int(rng.integers(5, 21))
        for t in range(length):
            rows.append(f"u{user}\ti{item}\t{t}")
            item = (item + 1 + int(rng.integers(3))) % items
    folder = data_path / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{DATASET}.inter").write_text("\n".join(rows) + "\n", encoding="utf-8")


def training_rows(config_dict: dict[str, Any], files: list[str]) -> int:
    from recbole_streamrec.config import Config
    from recbole_streamrec.quick_start import load_data

    config = Config(model="TIGER", dataset=DATASET, config_file_list=files, config_dict={**config_dict, "nproc": 1})
    return len(load_data(config)[1]._dataset)


def measure(name: str, nproc: int, use_gpu: bool, base: dict[str, Any], files: list[str], rows: int) -> dict:
    from recbole_streamrec.quick_start import run

    keys = {**base, "nproc": nproc, "use_gpu": use_gpu, "checkpoint_dir": str(Path(base["checkpoint_dir"]) / name)}
    result = run("TIGER", DATASET, config_file_list=files, config_dict=keys)
    seconds = result["train_seconds"]
    record = {"setting": name, "processes": nproc, "device": "cuda" if use_gpu else "cpu", "threads": base["threads"],
              "epochs": base["epochs"], "train_rows": rows, "seconds": seconds,
              "samples_per_s": base["epochs"] * rows / seconds, "test_ndcg@10": result["test_result"].get("ndcg@10")}
    print(f"[ddp_throughput] {name}: {record['samples_per_s']:.1f} samples/s ({seconds:.1f}s)", flush=True)
    return record


def report(records: list[dict], info: dict, args: argparse.Namespace, command: str) -> str:
    base = records[0]["samples_per_s"]
    rows = [(r["setting"], r["processes"], r["device"], r["threads"], f"{r['samples_per_s']:.1f}",
             f"{r['samples_per_s'] / base:.2f}×", f"{r['seconds']:.1f}") for r in records]
    table = markdown_table(["setting", "processes", "device", "threads each", "samples/s", "vs 1 process", "fit s"],
                           rows, "lrlrrrr")
    label = "**Smoke test (--quick): tiny settings, not a measurement.**\n\n" if args.quick else ""
    return (f"# TIGER training throughput, 1 vs 2 processes (torch.distributed)\n\n{label}"
            f"Command: `{command}`\n\nMachine: {machine_line(info)}; {datetime.now():%Y-%m-%d %H:%M}.\n\n"
            f"Data: synthetic, {args.users} users over {args.items} items, {records[0]['train_rows']} training rows; "
            f"{args.epochs} epochs; global batch {args.batch}; model from {args.config_files}.\n\n{table}\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="global train_batch_size")
    parser.add_argument("--config_files", default=str(ROOT / "properties" / "quick.yaml"))
    parser.add_argument("--settings", default="auto", help="comma list of cpu1, cpu2, gpu1 (auto: cpu1,cpu2 and "
                                                             "gpu1 where there is a GPU)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the script")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.items, args.epochs, args.batch = 300, 100, 1, 64
    import torch

    settings = args.settings.split(",") if args.settings != "auto" else (
        ["cpu1", "cpu2"] + (["gpu1"] if torch.cuda.is_available() else []))
    args.out.mkdir(parents=True, exist_ok=True)
    write_dataset(args.out / "data", args.users, args.items, seed=0)
    files = args.config_files.replace(",", " ").split()
    base = {"data_path": str(args.out / "data"), "cache_dir": str(args.out / "cache"),
            "checkpoint_dir": str(args.out / "checkpoints"), "epochs": args.epochs, "eval_step": 0,
            "train_batch_size": args.batch, "threads": 1, "show_progress": False, "state": "WARNING",
            "item_vector_source": "collaborative", "compare_with_pop": False,
            **({"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "cf_epochs": 1,
                "rqvae_epochs": 20, "codebook_size": 16, "beam_size": 10} if args.quick else {})}
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv (in every rank): only ours count
    rows = training_rows(base, files)  # the first run builds the item vectors and semantic IDs, before fit's clock
    plan = {"cpu1": (1, False), "cpu2": (2, False), "gpu1": (1, True)}
    records = [measure(name, *plan[name], base, files, rows) for name in settings]
    info = machine_info()
    command = "python bench/ddp_throughput.py " + " ".join(argv)
    (args.out / "ddp_throughput.json").write_text(json.dumps(
        {"command": command, "machine": info, "quick": args.quick, "records": records}, indent=2, default=float))
    (args.out / "ddp_throughput.md").write_text(report(records, info, args, command), encoding="utf-8")
    print(f"[ddp_throughput] wrote {args.out}/ddp_throughput.json and .md", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
