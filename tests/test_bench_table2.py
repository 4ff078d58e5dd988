"""bench/table2.py: which arguments each run of the plan receives (no run is started)."""
import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_script(name: str):
    """Import ``bench/<name>.py`` (bench/ is not a package) for the duration of a module's tests."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(f"{name}_under_test", None)
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def ablations():
    yield from bench_script("ablations")


@pytest.fixture(scope="module")
def table2():
    yield from bench_script("table2")


def plan_of(table2, *argv):
    args = table2.parse_args(["--dataset", "ml-100k", "--out", "/tmp/t2-test", *argv])
    return {s.name: s.args for s in table2.plan(args)}, args


def test_every_model_is_tuned_by_default_the_generative_ones_on_their_own_grid(table2):
    runs, args = plan_of(table2, "--models", "SASRec,TIGER,STREAMRec", "--lrs", "1e-3,5e-3")
    assert args.generative_lrs == [3e-4, 1e-3, 3e-3]
    assert set(runs) == {"SASRec-lr0.001", "SASRec-lr0.005",
                         *(f"{m}-lr{lr}" for m in ("TIGER", "STREAMRec") for lr in ("0.0003", "0.001", "0.003"))}
    assert "--learning_rate=0.005" in runs["SASRec-lr0.005"] and "--learning_rate=0.0003" in runs["TIGER-lr0.0003"]
    assert "--sft_learning_rate=0.003" in runs["STREAMRec-lr0.003"]
    runs, _ = plan_of(table2, "--models", "SASRec,TIGER", "--lrs", "1e-3,5e-3", "--generative_lrs", "5e-3")
    assert set(runs) == {"SASRec-lr0.001", "SASRec-lr0.005", "TIGER-lr0.005"}


def test_a_folder_made_when_the_generative_models_shared_the_baselines_grid_keeps_it(table2, tmp_path):
    """bench.json files written before --generative_lrs: their TIGER and STREAM-Rec were tuned on --lrs."""
    argv = ["--dataset", "ml-100k", "--out", str(tmp_path), "--models", "SASRec,TIGER", "--lrs", "1e-3,5e-3"]
    (tmp_path / "bench.json").write_text(json.dumps(
        {"settings": {"dataset": "ml-100k", "config_files": [], "extra": []}, "argv": argv}))
    again = table2.stored_args(table2.parse_args([*argv, "--report_only"]))
    assert {s.name for s in table2.plan(again)} == {f"{m}-lr{lr}" for m in ("SASRec", "TIGER")
                                                   for lr in ("0.001", "0.005")}
    table2.check_settings(again, tmp_path / "bench.json")  # the same settings: no exit
    # rerunning its command with today's default grid would plan other runs: refused, with what to pass
    with pytest.raises(SystemExit) as stop:
        table2.check_settings(table2.parse_args(argv), tmp_path / "bench.json")
    assert "pass --generative_lrs 0.001,0.005" in str(stop.value)
    # older still: TIGER ran once, at its config's rate
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "TIGER.json").write_text("{}")
    again = table2.stored_args(table2.parse_args([*argv, "--report_only"]))
    assert {s.name for s in table2.plan(again)} == {"SASRec-lr0.001", "SASRec-lr0.005", "TIGER"}


def test_baselines_get_the_grid_and_generative_models_their_own_rates(table2):
    runs, _ = plan_of(table2, "--models", "SASRec,TIGER,STREAMRec", "--lrs", "1e-3,5e-3", "--no_tune_generative")
    assert set(runs) == {"SASRec-lr0.001", "SASRec-lr0.005", "TIGER", "STREAMRec"}
    assert "--learning_rate=0.005" in runs["SASRec-lr0.005"]
    assert not any(a.startswith("--learning_rate") for a in runs["TIGER"] + runs["STREAMRec"])
    # checkpoints are named <model>-<dataset>-<tag>: no two runs may share one, or one would resume the other
    names = [(a[0], next(x for x in a if x.startswith("--checkpoint_tag="))) for a in runs.values()]
    assert len(set(names)) == len(names)


def test_generative_config_files_and_scoped_overrides_reach_only_their_models(table2):
    runs, args = plan_of(table2, "--models", "SASRec,TIGER,STREAMRec", "--lrs", "1e-3", "--no_tune_generative",
                         "--generative_config_files", "properties/quick.yaml",
                         "--extra", "epochs=3", "STREAMRec:pt_epochs=2")
    sasrec, tiger, streamrec = runs["SASRec-lr0.001"], runs["TIGER"], runs["STREAMRec"]
    assert not any(a.startswith("--config_files") for a in sasrec)
    assert "--config_files=properties/quick.yaml" in tiger and "--config_files=properties/quick.yaml" in streamrec
    assert all("--epochs=3" in r for r in (sasrec, tiger, streamrec))
    assert "--pt_epochs=2" in streamrec and "--pt_epochs=2" not in tiger + sasrec
    assert args.label and "reduced" in args.label  # the quick preset labels the table by default


def test_a_scoped_override_must_name_a_model(table2, capsys):
    with pytest.raises(SystemExit):
        plan_of(table2, "--models", "SASRec", "--extra", "Tiger:epochs=3")
    assert "Tiger is not a model" in capsys.readouterr().err
    # a rerun of some of the models keeps the full command's overrides; those of absent models are unused
    runs, _ = plan_of(table2, "--models", "SASRec", "--lrs", "1e-3", "--extra", "TIGER:epochs=3")
    assert "--epochs=3" not in runs["SASRec-lr0.001"]
    with pytest.raises(SystemExit):
        plan_of(table2, "--extra", "epochs")
    assert "key=value" in capsys.readouterr().err


def finished_record(table2, name, model, args, train_seconds, stages=None):
    """A ``runs/<name>.json`` as ``execute`` writes it, with made-up metrics."""
    metrics = {m: 0.01 for m in table2.METRICS}
    if stages:
        result = {"stage_results": {s: {"valid": metrics, "test": metrics} for s in stages}}
        passes = {s: {"users_per_second": 100.0, "test_result": metrics} for s in stages}
        config = {table2.STAGE_LR[s]: 1e-3 for s in stages}
    else:
        result = {"valid_result": metrics, "test_result": metrics}
        passes, config = {"best": {"users_per_second": 100.0, "test_result": metrics}}, {"learning_rate": 1e-3}
    return {"run": name, "model": model, "lr": None, "args": args, "result": result,
            "timing": {"passes": passes, "config": config}, "train_seconds": train_seconds, "peak_rss_mb": None}


def test_streamrec_started_from_the_tiger_row_counts_its_training_time(table2):
    runs, _ = plan_of(table2, "--models", "TIGER,STREAMRec", "--no_tune_generative",
                      "--extra", "STREAMRec:stages=[sft,rl]",
                      "STREAMRec:init_checkpoint=saved/TIGER-ml-100k-t2-abc123.pth")
    tag = next(a for a in runs["TIGER"] if a.startswith("--checkpoint_tag="))
    tiger_args = [a if a != tag else "--checkpoint_tag=t2-abc123" for a in runs["TIGER"]]
    tiger = finished_record(table2, "TIGER", "TIGER", tiger_args, 3600.0)
    stream = finished_record(table2, "STREAMRec", "STREAMRec", runs["STREAMRec"], 900.0, stages=["sft", "rl"])
    rows = table2.rows_for("STREAMRec", [stream], [tiger, stream])
    assert [r["label"] for r in rows] == ["STREAM-Rec (SFT)", "STREAM-Rec (RL)"]
    assert rows[-1]["train_seconds"] == 4500.0 and rows[-1]["stage1_run"] == "TIGER"
    assert "TIGER run `TIGER`" in table2.stage_note(rows)
    # another TIGER checkpoint (or none) is not this bench's stage 1: the run's own time only
    other = finished_record(table2, "TIGER", "TIGER", runs["TIGER"], 3600.0)
    rows = table2.rows_for("STREAMRec", [stream], [other, stream])
    assert rows[-1]["train_seconds"] == 900.0
    assert table2.stage_note(rows) == "STREAM-Rec's rows come from one run, SFT → RL."


def test_a_reused_run_is_not_trained_again_and_keeps_its_own_train_time(table2, tmp_path, monkeypatch, capsys):
    metrics = {m: 0.05 for m in table2.METRICS}
    made = tmp_path / "result-tiger.json"
    made.write_text(json.dumps({"valid_result": metrics, "test_result": metrics, "train_seconds": 5930.0}))
    with pytest.raises(SystemExit):  # which checkpoint? the run's own tag must be given
        plan_of(table2, "--models", "TIGER", "--reuse", f"TIGER={made}")
    assert "TIGER:checkpoint_tag=" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plan_of(table2, "--models", "TIGER", "--reuse", f"TIGER={tmp_path / 'none.json'}",
                "--extra", "TIGER:checkpoint_tag=paper-x")
    assert "no result file" in capsys.readouterr().err
    runs, args = plan_of(table2, "--models", "TIGER,STREAMRec", "--reuse", f"TIGER={made}",
                         "--extra", "TIGER:checkpoint_tag=paper-x")
    assert set(runs) == {"TIGER", *(f"STREAMRec-lr{lr}" for lr in ("0.0003", "0.001", "0.003"))}
    assert [a for a in runs["TIGER"] if a.startswith("--checkpoint_tag")] == ["--checkpoint_tag=paper-x"]
    assert not any(a.startswith("--learning_rate") for a in runs["TIGER"])  # not tuned: it is one finished run

    phases = []

    def fake_child(cmd, log, ledger, phase, threads):  # the timed test pass reproduces the file's metrics
        phases.append(phase)
        output = next(a.split("=", 1)[1] for a in cmd if a.startswith("--output="))
        Path(output).write_text(json.dumps({"passes": {"best": {"users_per_second": 9.0, "test_result": metrics}},
                                            "config": {"learning_rate": 3e-4}}))
        return {"phase": phase, "rc": 0, "seconds": 1.0, "peak_rss_mb": 1.0}

    monkeypatch.setattr(table2, "run_child", fake_child)
    spec = next(s for s in table2.plan(args) if s.name == "TIGER")
    (tmp_path / "runs").mkdir()
    record = table2.execute(spec, tmp_path / "runs", None)
    assert phases == ["time_eval"]  # no training process
    assert record["train_seconds"] == 5930.0 and record["reused_from"].endswith("result-tiger.json")
    assert record["timing_matches_run"]
    assert "(reused: `" in table2.runs_table(args, [spec], {"TIGER": record}, [])


@pytest.fixture(scope="module")
def readme_tables():
    yield from bench_script("readme_tables")


def fake_results(folder, ndcg):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text('{"settings": {"dataset": "amazon2023-instruments"}, "command": "python x"}')
    (folder / "table.md").write_text("# Table 2\n\n**reduced: a test**\n")
    (folder / "table.csv").write_text(
        "model,key,run,lr,recall@5,recall@10,ndcg@5,ndcg@10,valid_ndcg@10,paper_ndcg@10,train_seconds,"
        "eval_users_per_second,peak_rss_mb,status\n"
        f"SASRec,SASRec,SASRec-lr0.001,0.001,0.01,0.02,0.005,{ndcg},0.02,0.0286,95,1000,800,ok\n"
        "STREAM-Rec (RL),STREAMRec-RL,STREAMRec,,,,,,,,,,,not finished\n")


def test_readme_block_puts_our_numbers_beside_the_papers_and_detects_drift(readme_tables, tmp_path):
    folder, readme = tmp_path / "instruments", tmp_path / "README.md"
    fake_results(folder, 0.0123)
    readme.write_text(f"intro\n\n{readme_tables.BEGIN}\nstale table\n{readme_tables.END}\n\noutro\n")
    assert readme_tables.main([str(folder), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro") and text.rstrip().endswith("outro") and "stale table" not in text
    sasrec = next(line for line in text.splitlines() if line.startswith("| SASRec"))
    assert [c.strip() for c in sasrec.split("|")[1:-1]] == ["SASRec", "0.0200", "0.0123", "0.0556", "0.0286", "1m35s"]
    assert "| STREAM-Rec (RL) | — | — | 0.0608 | 0.0329 | not finished |" in text
    assert "**reduced: a test**" in text
    assert readme_tables.main(["--check", "--readme", str(readme)]) == 0
    fake_results(folder, 0.0456)  # a rerun changed the numbers; the README was not regenerated
    assert readme_tables.main(["--check", "--readme", str(readme)]) == 1


def test_the_committed_readme_matches_the_committed_results(readme_tables):
    assert readme_tables.main(["--check"]) == 0, "run: python bench/readme_tables.py"


def test_ablations_bench_runs_every_ablation_on_tiny_data(ablations, tiny_root, tmp_path) -> None:
    """bench/ablations.py end to end on ``tiny`` (tiny T5): every row of its tables is filled, the oracle too."""
    import yaml

    from conftest import DATASET, overrides

    keys = overrides(tiny_root, "STREAMRec", reasoning_steps=2, rl_hard_negatives=5, dpo_negative_pool=3,
                     rl_group_size=2, rl_batch_size=16, rl_steps_per_epoch=2, pt_epochs=1, sft_rounds=1,
                     sft_epochs_per_round=1, rl_epochs=1)
    data_path = keys.pop("data_path")
    keys.pop("checkpoint_dir")
    extra = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
             for k, v in keys.items()]
    package_logger = logging.getLogger("recbole_streamrec")
    level = package_logger.level
    try:  # a run sets the package's logger to INFO; later tests count log records
        results = ablations.main(["--dataset", DATASET, "--data_path", data_path, "--out", str(tmp_path),
                                  "--max_steps", "2", "--extra", *extra])
    finally:
        package_logger.setLevel(level)
    assert set(results["traces"]) == {"learned", "constant", "none", "oracle (upper bound)"}
    assert all("ndcg@10" in r for r in results["traces"].values()), results["traces"]
    assert sorted(results["inference_steps"]) == [0, 1, 2]
    assert {"sft_rl", "pure_rl", "pretrain"} <= set(results)
    table = (tmp_path / "ablations.md").read_text()
    assert "oracle (upper bound)" in table and "pure RL" in table and (tmp_path / "steps.png").is_file()


@pytest.fixture(scope="module")
def collect():
    yield from bench_script("collect_results")


def test_collect_results_train_time_sums_a_run_and_its_resumes(collect, tmp_path) -> None:
    first, resumed = tmp_path / "run.log", tmp_path / "resume.log"
    first.write_text("epoch 0 training [time: 10.50s, train loss: 1]\nepoch 0 evaluating [time: 2.00s, valid_score: 0.1]\n")
    resumed.write_text("Resume training from epoch 1\nepoch 1 training [time: 7.25s, train loss: 1]\n")
    assert collect.epoch_seconds(str(first)) == pytest.approx(12.5)
    assert collect.epoch_seconds(f"{first}+{resumed}") == pytest.approx(19.75)


def test_collect_results_after_adds_the_starting_runs_train_time(collect, tmp_path, capsys) -> None:
    import json

    metrics = {m: 0.01 for m in ("recall@5", "recall@10", "ndcg@5", "ndcg@10")}
    for name, seconds in (("stage1", 3000.0), ("sft", 600.0), ("more", 60.0)):
        result = {"model": "TIGER", "train_seconds": seconds, "test_result": metrics, "valid_result": metrics}
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    files = [str(tmp_path / f"{n}.json") for n in ("stage1", "sft")]
    collect.main(["--dataset", "tiny", "--names", "one,two", "--after", f",{files[0]}+{tmp_path / 'more.json'}",
                  *files])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| one") or line.startswith("| two")]
    assert "| 50m00s |" in rows[0] and "| 1h01m |" in rows[1], rows  # 3000 s; 600 + 3000 + 60 s
    with pytest.raises(SystemExit):
        collect.main(["--dataset", "tiny", "--after", files[0], *files])  # one value for two results
    assert "--after has 1 comma-separated values for 2 result files" in capsys.readouterr().err
    (tmp_path / "nosec.json").write_text(json.dumps({"model": "TIGER"}))
    with pytest.raises(SystemExit):
        collect.main(["--dataset", "tiny", "--after", str(tmp_path / "nosec.json"), files[1]])
    assert "nosec.json: the result file has no train_seconds" in capsys.readouterr().err


def test_collect_results_names_each_stage_and_shows_the_training_clock(collect, tmp_path, capsys) -> None:
    import json

    metrics = {m: 0.01 for m in ("recall@5", "recall@10", "ndcg@5", "ndcg@10")}
    stages = {s: {"valid": metrics, "test": metrics} for s in ("pretrain", "sft")}
    (tmp_path / "stream.json").write_text(json.dumps({"model": "STREAMRec", "train_seconds": 200.0,
                                                      "training_seconds": 120.0, "stage_results": stages}))
    (tmp_path / "tiger.json").write_text(json.dumps({"model": "TIGER", "train_seconds": 130.0,
                                                     "test_result": metrics, "valid_result": metrics}))
    collect.main(["--dataset", "tiny", "--names", "learned,tiger", str(tmp_path / "stream.json"),
                  str(tmp_path / "tiger.json")])
    out = capsys.readouterr().out
    assert "of it training (no validation)" in out
    rows = [line for line in out.splitlines() if line.startswith("| learned") or line.startswith("| tiger")]
    assert [r.split(" | ")[0] for r in rows] == ["| learned (PT)", "| learned (SFT)", "| tiger"], rows
    assert "| 3m20s | 2m00s |" in rows[0] and rows[2].count("| —") >= 1, rows  # no clock: a dash
    collect.main(["--dataset", "tiny", str(tmp_path / "tiger.json")])
    assert "of it training" not in capsys.readouterr().out, "no column when no run has a training clock"


@pytest.fixture(scope="module")
def plot_steps():
    yield from bench_script("plot_steps")


def test_plot_steps_reads_one_eval_result_per_step(plot_steps, tmp_path) -> None:
    import json

    for steps, ndcg in ((0, 0.05), (4, 0.07)):
        result = {"test_result": {"ndcg@10": ndcg, "recall@10": 2 * ndcg}}
        (tmp_path / f"l{steps}.json").write_text(json.dumps(result))
    out = tmp_path / "steps.png"
    curve = plot_steps.main(["--dataset", "tiny", "--out", str(out), f"4={tmp_path / 'l4.json'}",
                             f"0={tmp_path / 'l0.json'}"])
    assert curve == {4: {"ndcg@10": 0.07, "recall@10": 0.14}, 0: {"ndcg@10": 0.05, "recall@10": 0.1}}
    assert out.stat().st_size > 0
    with pytest.raises(SystemExit):
        plot_steps.main(["--dataset", "tiny", "--out", str(out), str(tmp_path / "l0.json")])  # no L=


@pytest.fixture(scope="module")
def annotation_table():
    yield from bench_script("annotation_table")


def test_annotation_table_reads_every_annotation_line(annotation_table, tmp_path) -> None:
    log = tmp_path / "run.log"
    stats = ("distinct_tokens {}, distinct_traces 9, distinct_targets 10, distance {}, first_in_target_l01 0.5, "
             "spells_target 0.25")
    log.write_text("x INFO  annotated 10 rows (annotated trace); annotation: " + stats.format(7, "[3.0, 2.0, 1.0]")
                   + "\nother line\ny INFO  annotated …; annotation: " + stats.format(8, "[3.0, 4.0, 1.0]") + "\n")
    lines = annotation_table.main([str(log)]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    assert lines[2].startswith("| run | 1 | 7 | 9 | 10 | 0.5000 | 0.2500 | 3.00, 2.00, 1.00 | yes |")
    assert lines[3].endswith("| 3.00, 4.00, 1.00 | no |")
    (tmp_path / "empty.log").write_text("no annotation here\n")
    with pytest.raises(SystemExit, match="empty.log"):
        annotation_table.main([str(tmp_path / "empty.log")])


@pytest.fixture(scope="module")
def curves():
    yield from bench_script("curves")


def test_curves_reads_every_validation_point_of_a_log(curves, tmp_path) -> None:
    def epoch(n, ndcg, prefix=""):
        return (f"x INFO  {prefix}epoch {n} training [time: 10.00s, train loss: 1]\n"
                f"x INFO  epoch {n} evaluating [time: 2.50s, valid_score: {ndcg}]\nx INFO  valid result: \n"
                f"recall@5 : 0.01    recall@10 : 0.02    ndcg@5 : 0.005    ndcg@10 : {ndcg}\n")
    tiger, sft = tmp_path / "tiger.log", tmp_path / "sft.log"
    tiger.write_text(epoch(0, 0.01) + epoch(1, 0.03) + epoch(2, 0.02)
                     + "x INFO  test result: {'ndcg@10': 0.9}\n")  # not a validation point
    sft.write_text(epoch(0, 0.015, "[sft] ") + "x INFO  annotated …\n" + epoch(0, 0.025, "[sft] "))  # round 2
    lines = curves.main(["--at", "1,3", f"TIGER l=0={tiger}", f"SFT={sft}"]).splitlines()
    assert lines[2] == "| TIGER l=0 | 0.0100 | 0.0200 | 0.0300 (2) | 3 | 38s |"
    assert lines[3] == "| SFT | 0.0150 | — | 0.0250 (2) | 2 | 25s |"
    every_second = tmp_path / "every-second.log"  # eval_step: 2 validates after epochs 2, 4 and 6
    every_second.write_text(epoch(1, 0.01) + epoch(3, 0.04) + epoch(5, 0.03))
    lines = curves.main(["--at", "3,4,6", f"eval_step 2={every_second}"]).splitlines()
    assert lines[2] == "| eval_step 2 | — | 0.0400 | 0.0300 | 0.0400 (4) | 6 | 38s |"
    out = tmp_path / "curves.png"
    curves.main([f"TIGER={tiger}", "--plot", str(out)])
    assert out.stat().st_size > 0
    (tmp_path / "empty.log").write_text("no epochs\n")
    with pytest.raises(SystemExit, match="empty.log"):
        curves.main([f"x={tmp_path / 'empty.log'}"])
    with pytest.raises(SystemExit):
        curves.main(["--at", "0,10", f"x={tiger}"])  # epochs count from 1
    with pytest.raises(SystemExit, match="recall@20"):
        curves.main(["--metric", "recall@20", f"x={tiger}"])
