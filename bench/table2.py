"""The paper's Table 2 by one command: every model under the SPEC §6 protocol, one process per run.

    python bench/table2.py --dataset amazon2018-scientific --data_path ../shared/data
    python bench/table2.py --dataset amazon2018-scientific --data_path ../shared/data \\
        --config_files properties/quick.yaml --out docs/results/amazon2018-scientific-quick

Each run is ``run_recbole_streamrec.py --result_file=… --checkpoint_tag=… --resume`` in its own process
(same config stack, split and evaluator as every other run). Baselines run once per ``--lrs`` value and the
one with the best *validation* NDCG@10 is reported; TIGER and STREAM-Rec are tuned the same way by default, on
their own grid ``--generative_lrs`` (``learning_rate`` for TIGER, ``sft_learning_rate`` for STREAM-Rec, selected on
the final stage's validation NDCG@10; ``--no_tune_generative``: their config's learning rates). STREAM-Rec gives
three rows (PT, SFT, RL) from one run's ``stage_results``.

Per run: wall-clock time of the training process, peak resident memory of that process (``wait4``), and the
evaluation throughput: a second process (``_common.child_time_eval`` through ``python -c``, with the run's
own arguments) loads the best checkpoint (every stage's, for STREAM-Rec) and times
``trainer.evaluate(test_data)`` (test users / second), checking that it reproduces the run's test metrics.
The semantic IDs and neighbour table are built once, before the runs, so no run's time includes them.

Resumable: ``<out>/runs/<run>.json`` marks a finished run (skipped); an interrupted one continues from its
``-last`` checkpoint. Rerun the same command after a kill. ``--report_only`` rebuilds the table from the runs.

``--reuse TIGER=<result.json>`` takes a model's row from a run another committed command already made (its
``--result_file`` and, through ``--extra TIGER:checkpoint_tag=<its tag>`` and the same overrides, its
checkpoint): nothing is trained again, the timed test pass still reloads the checkpoint and must reproduce the
file's test metrics, and the train time is the file's ``train_seconds`` (the fit's wall clock: training and
validation), marked as reused in the table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shlex
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    METRIC_LABELS, METRICS, PAPER_COLUMN, ROOT, fmt_number, fmt_seconds, machine_info, machine_line,
    markdown_table, paper_value, pyplot, run_child,
)

GENERATIVE = ("TIGER", "STREAMRec")
DEFAULT_MODELS = "Caser,GRU4Rec,SASRec,BERT4Rec,TIGER,STREAMRec"
STAGE_LABEL = {"pretrain": "PT", "sft": "SFT", "rl": "RL"}
STAGE_LR = {"pretrain": "pt_learning_rate", "sft": "sft_learning_rate", "rl": "rl_learning_rate"}
CHILD = "import sys; sys.path.insert(0, {bench!r}); import _common; _common.{entry}()"


@dataclass
class RunSpec:
    name: str  # file stem under <out>/runs/
    model: str
    lr: Optional[float]  # None: the config's own learning rate(s)
    args: list[str]  # the child's arguments (RecBole reads the --key=value ones as config overrides)
    reused: Optional[str] = None  # result file of a run made elsewhere (--reuse): not trained here


# ---- plan ---------------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> list[RunSpec]:
    key = hashlib.sha1(str(args.out.resolve()).encode()).hexdigest()[:6]  # one bench folder, one set of checkpoints
    specs = []
    for model in args.models:
        if model in args.reuse:  # one run, made elsewhere: its own checkpoint tag comes from --extra
            specs.append(RunSpec(model, model, None, common_args(args, model), reused=args.reuse[model]))
            continue
        if model not in GENERATIVE:
            grid = args.lrs
        else:
            grid = args.generative_lrs if args.tune_generative else [None]
        for lr in grid:
            suffix = f"-lr{lr:g}" if lr is not None else ""
            lr_key = "sft_learning_rate" if model == "STREAMRec" else "learning_rate"
            extra = [f"--{lr_key}={lr:g}"] if lr is not None else []
            specs.append(RunSpec(f"{model}{suffix}", model, lr,
                                 [*common_args(args, model), f"--checkpoint_tag=t2-{key}{suffix}", *extra]))
    return specs


def common_args(args: argparse.Namespace, model: str) -> list[str]:
    out = [f"--model={model}", f"--dataset={args.dataset}"]
    files = args.config_files + (args.generative_config_files if model in GENERATIVE else [])
    if files:
        out.append("--config_files=" + ",".join(resolve(f) for f in files))
    if args.data_path:
        out.append(f"--data_path={resolve(args.data_path)}")
    return out + [f"--{kv}" for scope, kv in map(split_scope, args.extra) if scope in (None, model)]


def split_scope(override: str) -> tuple[Optional[str], str]:
    """``Model:key=value`` → (``Model``, ``key=value``); an unscoped ``key=value`` applies to every run."""
    head, sep, rest = override.partition(":")
    return (head, rest) if sep and "=" not in head else (None, override)


def resolve(path: str) -> str:
    """A path given on the command line (relative to here, else to the repository root), made relative to
    the repository root, where the children run; relative paths keep the run records portable."""
    p = Path(path)
    absolute = p.resolve() if p.exists() or not (ROOT / p).exists() else (ROOT / p).resolve()
    return os.path.relpath(absolute, ROOT)


# ---- one run --------------------------------------------------------------------------------------------
def execute(spec: RunSpec, runs: Path, threads: Optional[int]) -> Optional[dict[str, Any]]:
    """Train (or resume), time the test pass, and write ``runs/<name>.json``; None if a step failed."""
    final, log, ledger = runs / f"{spec.name}.json", runs / f"{spec.name}.log", runs / f"{spec.name}.attempts.json"
    result_file, timing_file = runs / f"{spec.name}.result.json", runs / f"{spec.name}.timing.json"
    if spec.reused and not result_file.is_file():
        print(f"[table2] {spec.name}: reusing {spec.reused} (not trained here)", flush=True)
        result_file.write_text((ROOT / spec.reused).read_text())
    if not result_file.is_file():
        print(f"[table2] {spec.name}: training (log: {log})", flush=True)
        partial = result_file.with_suffix(".part")
        cmd = [sys.executable, str(ROOT / "run_recbole_streamrec.py"), *spec.args, f"--result_file={partial}",
               "--resume"]
        attempt = run_child(cmd, log, ledger, "train", threads)
        if attempt["rc"] != 0 or not partial.is_file():
            print(f"[table2] {spec.name}: training failed (exit {attempt['rc']}); see {log}", flush=True)
            return None
        partial.replace(result_file)
    if not timing_file.is_file():
        print(f"[table2] {spec.name}: timing the test pass", flush=True)
        cmd = [sys.executable, "-c", CHILD.format(bench=str(Path(__file__).parent), entry="child_time_eval"),
               *spec.args, f"--output={timing_file}"]
        attempt = run_child(cmd, log, ledger, "time_eval", threads)
        if attempt["rc"] != 0 or not timing_file.is_file():
            print(f"[table2] {spec.name}: timing failed (exit {attempt['rc']}); see {log}", flush=True)
            return None
    attempts = json.loads(ledger.read_text()) if ledger.is_file() else []
    train = [a for a in attempts if a["phase"] == "train"]
    result = json.loads(result_file.read_text())
    record = {
        "run": spec.name, "model": spec.model, "lr": spec.lr, "args": spec.args,
        "result": result, "timing": json.loads(timing_file.read_text()),
        "train_seconds": sum(a["seconds"] for a in train) if train else result.get("train_seconds"),
        "attempts": attempts, **({"reused_from": spec.reused} if spec.reused else {}),
        "peak_rss_mb": max((a["peak_rss_mb"] for a in train if a["peak_rss_mb"]), default=None),
        "finished": datetime.now().isoformat(timespec="seconds"),
    }
    record["timing_matches_run"] = timing_matches(record)
    final.write_text(json.dumps(record, indent=2))
    for f in (result_file, timing_file, ledger):
        f.unlink(missing_ok=True)
    print(f"[table2] {spec.name}: done in {fmt_seconds(record['train_seconds'])}", flush=True)
    return record


def timing_matches(record: dict[str, Any]) -> bool:
    """The timed test pass reproduces the run's own test metrics (same checkpoint, same split)."""
    result, passes = record["result"], record["timing"]["passes"]
    expected = {s: r["test"] for s, r in result["stage_results"].items()} if result.get("stage_results") \
        else {"best": result["test_result"]}
    return all(abs(passes[s]["test_result"][m] - v[m]) <= 1e-4 for s, v in expected.items() for m in METRICS)


def prepare(args: argparse.Namespace, runs: Path) -> None:
    """Semantic IDs (and STREAM-Rec's neighbour table) once, before the timed runs."""
    done = runs / "_prepare.json"
    generative = [m for m in GENERATIVE if m in args.models]
    if not generative or done.is_file():
        return
    model = generative[-1]  # STREAMRec's constructor builds both the semantic IDs and the neighbours
    print(f"[table2] preparing semantic IDs{' and neighbours' if model == 'STREAMRec' else ''}", flush=True)
    cmd = [sys.executable, "-c", CHILD.format(bench=str(Path(__file__).parent), entry="child_prepare"),
           *common_args(args, model), f"--output={done}"]
    ledger = runs / "_prepare.attempts.json"
    attempt = run_child(cmd, runs / "_prepare.log", ledger, "prepare", args.threads)
    ledger.unlink(missing_ok=True)
    if attempt["rc"] != 0:
        print(f"[table2] preparation failed; see {runs / '_prepare.log'} (the runs will build them)", flush=True)


# ---- report ---------------------------------------------------------------------------------------------
def valid_score(record: dict[str, Any]) -> float:
    """Validation NDCG@10 the run is selected on (STREAM-Rec: of its final stage)."""
    result = record["result"]
    if result.get("stage_results"):
        return list(result["stage_results"].values())[-1]["valid"]["ndcg@10"]
    return result["valid_result"]["ndcg@10"]


def arg_value(args: list[str], key: str) -> Optional[str]:
    """The value of ``--key=value`` in a run's arguments (the last one wins, as in RecBole), else None."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{key}=")]
    return values[-1] if values else None


def stage1_run(record: dict[str, Any], records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The TIGER run of this bench whose checkpoint a STREAM-Rec run started from as its stage 1, if any.

    ``--extra STREAMRec:stages=[sft,rl] STREAMRec:init_checkpoint=saved/TIGER-<dataset>-<tag>.pth`` makes a
    trained TIGER STREAM-Rec's stage 1 (and π_ref); its training time then belongs to STREAM-Rec's too.
    """
    start = arg_value(record["args"], "init_checkpoint")
    if not start:
        return None
    from recbole_streamrec.trainer.checkpoint import checkpoint_name  # the runs' own naming rule (imports torch)

    for other in records:
        config = {"checkpoint_dir": "", "model": other["model"], "dataset": arg_value(other["args"], "dataset"),
                  "checkpoint_tag": arg_value(other["args"], "checkpoint_tag")}
        if other["model"] == "TIGER" and Path(start).name == checkpoint_name(config):
            return other
    return None


def rows_for(model: str, records: list[dict[str, Any]], everything: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The table rows of ``model``: the run with the best validation NDCG@10 (one row per stage for STREAM-Rec).

    ``everything``: all finished runs of the bench, where a STREAM-Rec run's stage-1 TIGER run is looked up.
    """
    if not records:
        return [{"key": model, "label": model, "status": "not finished"}]
    best = max(records, key=valid_score)
    timing, result = best["timing"], best["result"]
    base = {"run": best["run"], "train_seconds": best["train_seconds"], "peak_rss_mb": best["peak_rss_mb"],
            "status": "ok", "n_runs": len(records)}
    stage_results = result.get("stage_results")
    if not stage_results:
        lr = best["lr"] if best["lr"] is not None else timing["config"]["learning_rate"]
        return [{**base, "key": model, "label": model, "lr": lr, "test": result["test_result"],
                 "valid_ndcg@10": result["valid_result"]["ndcg@10"],
                 "eval_users_per_second": timing["passes"]["best"]["users_per_second"]}]
    rows, stage1 = [], stage1_run(best, list(everything))
    train_seconds = best["train_seconds"]
    if stage1 is not None and train_seconds is not None and stage1["train_seconds"] is not None:
        train_seconds += stage1["train_seconds"]  # its stage 1 is that TIGER run: the same budget counts twice
    for i, (stage, res) in enumerate(stage_results.items()):
        last = i == len(stage_results) - 1
        rows.append({**base, "key": f"{model}-{STAGE_LABEL[stage]}", "label": f"STREAM-Rec ({STAGE_LABEL[stage]})",
                     "lr": timing["config"][STAGE_LR[stage]], "test": res["test"],
                     "valid_ndcg@10": res["valid"]["ndcg@10"],
                     "eval_users_per_second": timing["passes"][stage]["users_per_second"],
                     "train_seconds": train_seconds if last else None, "shared_run": not last,
                     "stage1_run": stage1["run"] if stage1 is not None else None})
    return rows


def write_report(args: argparse.Namespace, specs: list[RunSpec], records: dict[str, dict], meta: dict) -> None:
    rows = [row for model in args.models
            for row in rows_for(model, [records[s.name] for s in specs if s.model == model and s.name in records],
                                list(records.values()))]
    for row in rows:
        row["paper_ndcg@10"] = paper_value(args.dataset, row["key"], column=args.paper_column)
    write_csv(args.out / "table.csv", rows)
    write_chart(args.out / "chart.png", rows, args)
    (args.out / "table.md").write_text(table_markdown(args, specs, records, rows, meta))
    print((args.out / "table.md").read_text())


def summary_table(rows: list[dict[str, Any]], column: Optional[str]) -> str:
    header = ["model", "R@5", "R@10", "N@5", "N@10", f"N@10 paper ({column or '—'})", "valid N@10", "lr",
              "train time", "eval users/s", "peak RSS"]
    body = []
    for r in rows:
        test = r.get("test", {})
        train = "see RL row" if r.get("shared_run") else fmt_seconds(r.get("train_seconds"))
        train = train if "test" in r else "not finished (see All runs)"
        body.append([r["label"], *(fmt_number(test.get(m)) for m in METRICS), fmt_number(r.get("paper_ndcg@10")),
                     fmt_number(r.get("valid_ndcg@10")), f"{r['lr']:g}" if r.get("lr") is not None else "—", train,
                     fmt_number(r.get("eval_users_per_second"), 1),
                     f"{r['peak_rss_mb'] / 1024:.2f} GiB" if r.get("peak_rss_mb") else "—"])
    return markdown_table(header, body, "lrrrrrrrrrr")


def runs_table(args: argparse.Namespace, specs: list[RunSpec], records: dict[str, dict], rows: list[dict]) -> str:
    selected, body = {r.get("run") for r in rows}, []
    for s in specs:
        rec = records.get(s.name)
        if rec is None:
            body.append([s.name, f"{s.lr:g}" if s.lr is not None else "config", "—", "—", "—", "—",
                         unfinished_status(args.out / "runs", s.name)])
            continue
        body.append([s.name, f"{s.lr:g}" if s.lr is not None else "config", fmt_number(valid_score(rec)),
                     fmt_number(_final_test(rec)),
                     fmt_seconds(rec["train_seconds"]) + (f" (reused: `{rec['reused_from']}`)"
                                                          if rec.get("reused_from") else ""),
                     "yes" if timing_matches(rec) else "**no**", "selected" if s.name in selected else ""])
    return markdown_table(["run", "lr", "valid N@10", "test N@10", "train time", "timed pass = run's test", ""],
                          body, "llrrrll")


def table_markdown(args, specs: list[RunSpec], records: dict[str, dict], rows: list[dict], meta: dict) -> str:
    column, note = PAPER_COLUMN.get(args.dataset, (None, "no paper column for this dataset"))
    if args.paper_column:
        column, note = args.paper_column, "chosen with --paper_column" + ("; " + note if column else "")
    machines = sorted({machine_line(r["timing"]["machine"]) for r in records.values()})
    machines = machines or [machine_line(machine_info())]
    finished = sorted(r["finished"] for r in records.values()) or ["—"]
    grid = ", ".join(f"{lr:g}" for lr in args.lrs)
    generative_grid = "the same grid" if args.generative_lrs == args.lrs else \
        "out of " + ", ".join(f"{lr:g}" for lr in args.generative_lrs)
    generative = (f"TIGER (`learning_rate`) and STREAM-Rec (`sft_learning_rate`) {generative_grid}, STREAM-Rec "
                  "selected on its final stage" if args.tune_generative
                  else "TIGER and STREAM-Rec: their config's learning rates (per stage for STREAM-Rec)")
    lines = [
        f"# Table 2 — {args.dataset}", "",
        *([f"**{args.label}**", ""] if args.label else []),
        f"- dataset: `{args.dataset}` (data_path `{args.data_path or 'dataset/'}`)",
        f"- paper column: {column} — {note}" if column else f"- paper column: none — {note}",
        f"- machine: {'; '.join(machines)}",
        f"- date: {datetime.now().isoformat(timespec='minutes')} (runs finished {finished[0]} … {finished[-1]})",
        f"- config files: {', '.join(args.config_files) if args.config_files else 'none'}"
        + (f"; TIGER and STREAM-Rec also {', '.join(args.generative_config_files)}"
           if args.generative_config_files else ""),
        f"- extra overrides: {', '.join(args.extra) if args.extra else 'none'}",
        "- configuration: " + ("**reduced / modified** (see the two lines above)"
                               if args.config_files or args.generative_config_files or args.extra
                               else "the paper's (properties/ defaults, no config files, no overrides)"),
        f"- command: `{meta['command']}`", "",
        summary_table(rows, column), "",
        f"Test split, full ranking, leave-one-out (SPEC §6). Baselines: the learning rate with the best validation "
        f"NDCG@10 out of {grid}; {generative}.", "",
        "Train time: wall clock of the training process (data loading, training, early-stopping validation, the "
        "final test pass; summed over resumed attempts; a reused run's is its result file's `train_seconds`, the "
        "fit's training and validation only). " + stage_note(rows) + " "
        "Eval users/s: test users over the wall time of one `trainer.evaluate(test_data)` pass in a separate "
        "process. Peak RSS: the training process's maximum resident host memory (on a GPU, the timed pass's GPU "
        "memory is `cuda_max_allocated_mb` in `runs/<run>.json`).",
        *(["", f"Semantic IDs / neighbour table built before the runs in {fmt_seconds(meta['prepare_seconds'])}."]
          if meta.get("prepare_seconds") is not None else []),
        "", "## All runs", "", runs_table(args, specs, records, rows), "",
        "“timed pass = run's test”: the throughput pass reloaded the run's best checkpoint and reproduced its test "
        "metrics (for STREAM-Rec, every stage's).", "",
    ]
    return "\n".join(lines)


def stage_note(rows: list[dict[str, Any]]) -> str:
    """How STREAM-Rec's rows relate to one another (and to the TIGER row, when that run is its stage 1)."""
    stages = " → ".join(r["key"].split("-", 1)[1] for r in rows if r["key"].startswith("STREAMRec-"))
    stage1 = next((r["stage1_run"] for r in rows if r.get("stage1_run")), None)
    if not stages or stage1 is None:
        return f"STREAM-Rec's rows come from one run, {stages}." if stages else ""
    return (f"STREAM-Rec's rows come from one run, {stages}, started from the best checkpoint of the TIGER run "
            f"`{stage1}` as its stage 1 and π_ref (not the paper's pretraining): its train time is that run's plus "
            f"its own, so STREAM-Rec has had TIGER's whole budget and then some.")


def unfinished_status(runs: Path, name: str) -> str:
    """Why a run has no record yet, from its attempts ledger."""
    ledger = runs / f"{name}.attempts.json"
    if not ledger.is_file():
        return "not run yet"
    last = json.loads(ledger.read_text())[-1]
    if last["rc"] is None:
        return f"interrupted during {last['phase']} (rerun to resume)"
    return f"{last['phase']} failed (exit {last['rc']}), see runs/{name}.log"


def _final_test(record: dict[str, Any]) -> float:
    result = record["result"]
    if result.get("stage_results"):
        return list(result["stage_results"].values())[-1]["test"]["ndcg@10"]
    return result["test_result"]["ndcg@10"]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = ["model", "key", "run", "lr", *METRICS, "valid_ndcg@10", "paper_ndcg@10", "train_seconds",
              "eval_users_per_second", "peak_rss_mb", "status"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({"model": r["label"], **{k: r.get(k) for k in fields[1:] if k not in METRICS},
                             **{m: r.get("test", {}).get(m) for m in METRICS}})


def write_chart(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    plt = pyplot()
    rows = [r for r in rows if r.get("test")]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.2))
    width = 0.8 / len(METRICS)
    for j, metric in enumerate(METRICS):
        xs = [i + (j - 1.5) * width for i in range(len(rows))]
        ax.bar(xs, [r["test"][metric] for r in rows], width, label=METRIC_LABELS[metric])
    paper = [(i + 1.5 * width, r["paper_ndcg@10"]) for i, r in enumerate(rows) if r.get("paper_ndcg@10")]
    if paper:
        ax.scatter(*zip(*paper), marker="_", s=200, color="black", zorder=3, label="N@10 paper")
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("test metric")
    title = f"{args.dataset}" + (f" — {args.label}" if args.label else "")
    ax.set_title(textwrap.fill(title, width=int(fig.get_figwidth() * 12)), fontsize=9, loc="left")
    ax.legend(fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a RecBole atomic dataset under --data_path")
    parser.add_argument("--data_path", default=None, help="folder of datasets (default: the config's, dataset/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default docs/results/<dataset>)")
    parser.add_argument("--config_files", default=None, help="YAML files, comma separated (e.g. properties/quick.yaml)")
    parser.add_argument("--generative_config_files", default=None,
                        help="YAML files for TIGER and STREAM-Rec only (e.g. properties/quick.yaml, so that the "
                             "baselines keep their standard settings)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma separated")
    parser.add_argument("--lrs", default="1e-3,3e-3,5e-3", help="learning-rate grid of the baselines")
    parser.add_argument("--generative_lrs", default="3e-4,1e-3,3e-3",
                        help="learning-rate grid of TIGER and STREAM-Rec, lower than the baselines': the paper-size "
                             "TIGER validated higher at 3e-4 and 5e-4 (with recency_embedding) than at 1e-3 (without), "
                             "the CPU preset's ties at 5e-4 and 1e-3 and falls far at 3e-3, and STREAM-Rec's SFT "
                             "validated best at 3e-3 in the equal-time runs")
    parser.add_argument("--no_tune_generative", dest="tune_generative", action="store_false",
                        help="TIGER and STREAM-Rec keep their config's learning rates (default: the "
                             "--generative_lrs grid)")
    parser.add_argument("--extra", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides passed to every run (e.g. epochs=5 eval_batch_size=512); "
                             "Model:key=value passes one to that model's runs only (e.g. STREAMRec:pt_epochs=6)")
    parser.add_argument("--reuse", nargs="+", action="extend", default=[], metavar="MODEL=RESULT_JSON",
                        help="take MODEL's row from a run already made by another command: its --result_file, "
                             "with --extra MODEL:checkpoint_tag=<its tag> and its overrides (nothing is retrained; "
                             "the timed test pass checks the checkpoint against the file)")
    parser.add_argument("--label", default=None, help="text shown at the top of table.md (say 'reduced: …' here)")
    parser.add_argument("--paper_column", default=None, help="Instruments | Scientific (default: from --dataset)")
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of each run (default: torch's)")
    parser.add_argument("--report_only", action="store_true",
                        help="rebuild table.md/csv/png from the finished runs, with the arguments that made --out")
    parser.add_argument("--dry_run", action="store_true", help="print the runs' commands and exit")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.out = args.out or ROOT / "docs" / "results" / args.dataset
    args.config_files = file_list(args.config_files)
    args.generative_config_files = file_list(args.generative_config_files)
    args.models = [m for m in args.models.split(",") if m]
    args.lrs = [float(x) for x in args.lrs.split(",") if x]
    args.generative_lrs = [float(x) for x in args.generative_lrs.split(",") if x]
    known = dict.fromkeys([*DEFAULT_MODELS.split(","), *args.models])  # a subset rerun keeps the full --extra
    for kv in args.extra:
        scope, override = split_scope(kv)
        if "=" not in override:
            parser.error(f"--extra takes key=value or Model:key=value, not {kv!r}")
        if scope is not None and scope not in known:
            parser.error(f"--extra {kv!r}: {scope} is not a model ({', '.join(known)})")
    reuse = {}
    for kv in args.reuse:
        model, sep, path = kv.partition("=")
        if not sep or model not in known:
            parser.error(f"--reuse takes MODEL=RESULT_JSON with MODEL one of {', '.join(known)}, not {kv!r}")
        if not (ROOT / resolve(path)).is_file():
            parser.error(f"--reuse {kv!r}: no result file {path}")
        if not any(scope == model and o.startswith("checkpoint_tag=") for scope, o in map(split_scope, args.extra)):
            parser.error(f"--reuse {kv!r} needs --extra {model}:checkpoint_tag=<the tag of the run that wrote it>")
        reuse[model] = resolve(path)
    args.reuse = reuse
    if args.label is None and any(Path(f).name == "quick.yaml"
                                  for f in args.config_files + args.generative_config_files):
        args.label = "reduced: properties/quick.yaml preset (small T5, few epochs), not the paper's configuration"
    return args


def file_list(value: Optional[str]) -> list[str]:
    """``a.yaml,b.yaml`` (or space separated) → ``["a.yaml", "b.yaml"]``; nothing → ``[]``."""
    return value.replace(",", " ").split() if value else []


def check_settings(args: argparse.Namespace, meta_file: Path) -> dict[str, Any]:
    """``<out>/bench.json``: the settings that define the runs; a rerun must not change them."""
    settings = {"dataset": args.dataset, "config_files": args.config_files, "extra": args.extra}
    if args.generative_config_files:  # absent from older bench.json files
        settings["generative_config_files"] = args.generative_config_files
    if args.tune_generative and args.generative_lrs != args.lrs:  # older folders tuned them on --lrs
        settings["generative_lrs"] = args.generative_lrs
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"settings": settings}
    if meta["settings"] != settings:
        hint = ""
        if "generative_lrs" in settings and "generative_lrs" not in meta["settings"]:
            lrs = ",".join(f"{lr:g}" for lr in args.lrs)
            hint = f" (it tuned TIGER and STREAM-Rec on --lrs: pass --generative_lrs {lrs})"
        sys.exit(f"{meta_file} was made with {meta['settings']}, not {settings}: use another --out{hint}")
    if not args.report_only or "command" not in meta:
        meta["command"] = "python bench/table2.py " + shlex.join(args.argv)
        meta["argv"] = args.argv
    return meta


def stored_args(args: argparse.Namespace) -> argparse.Namespace:
    """``--report_only``: the arguments of the command that made ``--out`` (an explicit ``--label`` wins)."""
    meta_file = args.out / "bench.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    stored = meta.get("argv")
    if not stored:
        return args
    again = parse_args([a for a in stored if a != "--dry_run"] + ["--report_only"])
    if "generative_lrs" not in meta["settings"]:  # made before --generative_lrs, or with the baselines' grid
        again.generative_lrs = again.lrs
        if any((args.out / "runs" / f"{model}.json").is_file() for model in GENERATIVE):
            again.tune_generative = False  # made before table2 tuned them at all (their runs have no -lr suffix)
    again.out, again.argv = args.out, args.argv
    if explicit_label(args.argv):
        again.label = args.label
    return again


def explicit_label(argv: list[str]) -> bool:
    return "--label" in argv or any(a.startswith("--label=") for a in argv)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        args = stored_args(args)
    specs = plan(args)
    if args.dry_run:
        print(f"# training runs, from {ROOT} (each followed by a timed test pass in a second process)")
        for s in specs:
            print(shlex.join([sys.executable, "run_recbole_streamrec.py", *s.args, "--resume"]))
        return
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    meta = check_settings(args, args.out / "bench.json")
    if explicit_label(args.argv):
        meta["label"] = args.label  # kept: a later rerun or --report_only shows the same label
    elif meta.get("label"):
        args.label = meta["label"]
    (args.out / "bench.json").write_text(json.dumps(meta, indent=2))
    if not args.report_only:
        prepare(args, runs)
        for spec in specs:
            if not (runs / f"{spec.name}.json").is_file():
                execute(spec, runs, args.threads)
    if (runs / "_prepare.json").is_file():
        meta["prepare_seconds"] = json.loads((runs / "_prepare.json").read_text())["seconds"]
    records = {s.name: json.loads((runs / f"{s.name}.json").read_text())
               for s in specs if (runs / f"{s.name}.json").is_file()}
    write_report(args, specs, records, meta)


if __name__ == "__main__":
    main()
