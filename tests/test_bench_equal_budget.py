"""bench/equal_budget.sh and bench/grpo_rewards.sh: the command line each job gets (a stand-in ``python`` records
it; nothing is trained); bench/equal_budget_paired.sh and bench/equal_time_summary.py on rank and result files the
tests write."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASET = "equal-budget-test"  # no real dataset has this name: the stage-1 files below are this test's own


def run_with_stand_in_python(tmp_path: Path, script: str, out: Path, **env: str
                             ) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``bench/<script> OUT data`` with ``env`` and a ``python`` that only appends its arguments to a file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (bin_dir / "python").chmod(0o755)
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DATASET": DATASET, **env}
    done = subprocess.run(["bash", str(ROOT / "bench" / script), str(out), "data"],
                          env=full_env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    return run_with_stand_in_python(tmp_path, "equal_budget.sh", tmp_path / "out", BUDGET="100", **env)


def job_call(calls: list[str], job: str) -> str:
    (line,) = [c for c in calls if c.startswith("run_recbole_streamrec.py") and f"/{job}.json" in c]
    return line


def test_jobs_train_their_own_stage_1_by_default(tmp_path) -> None:
    done, calls = run_script(tmp_path, JOBS="constant pure_rl")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--stages" not in job_call(calls, "constant") and "init_checkpoint" not in job_call(calls, "constant")
    assert "--stages=[pretrain,rl]" in job_call(calls, "pure_rl")


def stand_in_checkpoints(*parts: str):
    """Empty stand-ins for the files a ``learned`` job of DATASET leaves in the repository's saved/ (a generator
    for a fixture: the files exist until it resumes)."""
    saved = ROOT / "saved"
    saved.mkdir(exist_ok=True)
    files = [saved / f"STREAMRec-{DATASET}-learned-{part}.pth" for part in parts]
    for file in files:
        file.write_bytes(b"")
    yield
    for file in files:
        file.unlink()


@pytest.fixture
def learned_stage_1():
    yield from stand_in_checkpoints("pretrain", "pi_ref")


def test_from_pt_starts_the_ablations_from_an_earlier_stage_1(tmp_path, learned_stage_1) -> None:
    done, calls = run_script(tmp_path, JOBS="constant none pure_rl tiger", FROM_PT="learned")
    assert done.returncode == 0, done.stdout + done.stderr
    for job in ("constant", "none"):
        line = job_call(calls, job)
        assert "--stages=[sft,rl]" in line, line
        assert f"--init_checkpoint=saved/STREAMRec-{DATASET}-learned-pretrain.pth" in line
        assert f"--reference_checkpoint=saved/STREAMRec-{DATASET}-learned-pi_ref.pth" in line
    assert "--stages=[rl] " in job_call(calls, "pure_rl") + " "
    assert "init_checkpoint" not in job_call(calls, "tiger")  # TIGER has no stage 1 to share


def test_from_pt_starts_a_learned_job_from_that_stage_1_too(tmp_path, learned_stage_1) -> None:
    """Without FROM_PT the learned job trains its own stage 1; with it, every STREAM-Rec job shares that one."""
    done, calls = run_script(tmp_path, JOBS="learned")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--stages" not in job_call(calls, "learned") and "init_checkpoint" not in job_call(calls, "learned")
    (tmp_path / "from").mkdir()
    done, calls = run_script(tmp_path / "from", JOBS="learned", FROM_PT="learned")
    assert done.returncode == 0, done.stdout + done.stderr
    line = job_call(calls, "learned")
    assert "--stages=[sft,rl]" in line and "--checkpoint_tag=learned" in line
    assert f"--init_checkpoint=saved/STREAMRec-{DATASET}-learned-pretrain.pth" in line


def test_from_pt_without_its_checkpoints_stops_before_anything_runs(tmp_path) -> None:
    done, calls = run_script(tmp_path, JOBS="constant", FROM_PT="no-such-run")
    assert done.returncode == 2
    assert f"saved/STREAMRec-{DATASET}-no-such-run-pretrain.pth not found" in done.stdout
    assert calls == []  # no machine probe, no semantic IDs, no job


def test_from_pt_jobs_keep_their_sft_and_grpo_budgets(tmp_path, learned_stage_1) -> None:
    done, calls = run_script(tmp_path, JOBS="none pure_rl", FROM_PT="learned", PT_SHARE="50", SFT_SHARE="30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--sft_time_budget=30" in job_call(calls, "none") and "--rl_time_budget=20" in job_call(calls, "none")
    assert "--rl_time_budget=50" in job_call(calls, "pure_rl")  # pure RL gets SFT's share and GRPO's


def write_ranks(path: Path, ranks: list[int]) -> None:
    path.write_text("user,rank\n" + "".join(f"u{i},{r}\n" for i, r in enumerate(ranks)))


def run_paired(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "bench/equal_budget_paired.sh"), str(out)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_paired_script_compares_the_jobs_present(tmp_path) -> None:
    """With every rank file there, equal_budget_paired.sh only compares: TIGER and no trace, no constant job."""
    out = tmp_path / "out"
    out.mkdir()
    for job in ("tiger", "learned", "none"):
        (out / f"{job}.json").write_text("{}")
    for name, ranks in {"tiger": [1, 2, 0, 5], "learned": [0, 3, 0, 0], "learned-sft": [0, 2, 0, 0],
                        "none": [1, 0, 0, 4], "none-sft": [1, 0, 0, 4]}.items():
        write_ranks(out / f"ranks-{name}.csv", ranks)
    done = run_paired(out)
    assert done.returncode == 0, done.stdout + done.stderr
    vs_tiger = (out / "paired-vs-tiger.md").read_text()
    for name in ("TIGER", "STREAM-Rec SFT (learned)", "STREAM-Rec GRPO (learned)", "SFT (none)"):
        assert f"| {name} |" in vs_tiger, vs_tiger
    assert (out / "paired-rl-vs-sft-learned.json").is_file() and (out / "paired-rl-vs-sft-none.json").is_file()
    assert not (out / "paired-vs-constant.md").exists() and not (out / "eval-only").exists()
    assert not (out / "paired-pure-rl.md").exists()  # no pure_rl rank file


def test_paired_script_compares_pure_rl_with_sft_then_rl(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "learned.json").write_text("{}")
    for name, ranks in {"learned": [0, 3, 0, 0], "learned-sft": [0, 2, 0, 0], "pure_rl": [5, 0, 1, 0]}.items():
        write_ranks(out / f"ranks-{name}.csv", ranks)
    done = run_paired(out)
    assert done.returncode == 0, done.stdout + done.stderr
    table = (out / "paired-pure-rl.md").read_text()
    for name in ("SFT → GRPO (learned)", "pure RL"):
        assert f"| {name} |" in table, table


def test_paired_script_names_a_missing_folder(tmp_path) -> None:
    done = subprocess.run(["bash", str(ROOT / "bench/equal_budget_paired.sh"), str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nowhere: no such folder" in done.stdout


def write_folder(folder: Path, ndcg: dict, paired: dict) -> None:
    """A bench/equal_budget.sh folder's result files: ``ndcg`` maps a job to its test NDCG@10 (STREAM-Rec jobs:
    ``{"sft": x, "rl": y}``); ``paired`` maps a paired file to its ``(run, baseline, a, b, p)`` rows."""
    folder.mkdir()
    for job, value in ndcg.items():
        if isinstance(value, dict):
            result = {"stage_results": {stage: {"test": {"ndcg@10": v}} for stage, v in value.items()}}
        else:
            result = {"test_result": {"ndcg@10": value}}
        (folder / f"{job}.json").write_text(json.dumps(result))
    for name, rows in paired.items():
        (folder / name).write_text(json.dumps([
            {"run": run, "baseline": base, "metric": "ndcg@10", "a": a, "b": b, "diff": b - a, "p": p}
            for run, base, a, b, p in rows]))


def run_summary(*runs: tuple[str, Path], extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [arg for label, folder in runs for arg in ("--run", label, str(folder))]
    return subprocess.run([sys.executable, str(ROOT / "bench/equal_time_summary.py"), *args, *extra],
                          capture_output=True, text=True, timeout=60)


def test_summary_says_which_target_each_folder_meets(tmp_path) -> None:
    write_folder(tmp_path / "a", {"tiger": 0.04, "learned": {"sft": 0.03, "rl": 0.033}, "constant": {"sft": 0.025}},
                 {"paired-vs-tiger.json": [("STREAM-Rec SFT (learned)", "TIGER", 0.04, 0.03, 0.0)],
                  "paired-rl-vs-sft-learned.json": [("learned GRPO", "learned SFT", 0.03, 0.033, 0.2)],
                  "paired-vs-constant.json": [("learned SFT", "constant SFT", 0.025, 0.03, 0.01),
                                              ("no-trace SFT", "constant SFT", 0.025, 0.001, 0.0)]})
    write_folder(tmp_path / "b", {"tiger": 0.05, "learned": {"sft": 0.05, "rl": 0.04}},
                 {"paired-rl-vs-sft-learned.json": [("learned GRPO", "learned SFT", 0.05, 0.04, 0.0004)]})
    done = run_summary(("short", tmp_path / "a"), ("long", tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert ("| short | 0.0400 | 0.0300 | 0.0330 | 0.0250 | — | −25.0% (p < 0.001), not met | "
            "+10.0% (p = 0.200), met, not significant | +20.0% (p = 0.010), met |") == rows["short"]
    assert rows["long"].endswith("| 0.0500 | 0.0500 | 0.0400 | — | — | — | −20.0% (p < 0.001), not met | — |")


def test_summary_names_a_folder_without_results(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_summary(("x", tmp_path / "empty"))
    assert done.returncode == 2 and "empty: neither tiger.json nor learned.json" in done.stderr
    write_folder(tmp_path / "pt", {"learned": {"pretrain": 0.01}}, {})
    done = run_summary(("y", tmp_path / "pt"))
    assert done.returncode == 1 and "learned.json: no stage_results.sft (stages: pretrain)" in done.stderr


def run_grpo_rewards(tmp_path: Path, run_dir: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    return run_with_stand_in_python(tmp_path, "grpo_rewards.sh", run_dir, SEED="7", **env)


@pytest.fixture
def learned_sft():
    yield from stand_in_checkpoints("sft", "pi_ref")


def test_grpo_rewards_runs_both_reward_sets_from_the_sft_model(tmp_path, learned_sft) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_ranks(run_dir / "ranks-learned-sft.csv", [0, 1])
    done, calls = run_grpo_rewards(tmp_path, run_dir, RL_BUDGET="720", SUBDIR="longer")
    assert done.returncode == 0, done.stdout + done.stderr
    paper, = [c for c in calls if "longer/paper.json" in c]
    ablation, = [c for c in calls if "longer/no-thinking-likelihood.json" in c]
    for line in (paper, ablation):
        assert "--stages=[rl]" in line and "--seed=7" in line and "--rl_time_budget=720" in line, line
        assert f"--init_checkpoint=saved/STREAMRec-{DATASET}-learned-sft.pth" in line
        assert f"--reference_checkpoint=saved/STREAMRec-{DATASET}-learned-pi_ref.pth" in line
    assert "reward_thinking_likelihood_weight" not in paper
    assert "--reward_thinking_likelihood_weight=0" in ablation
    bootstrap, = [c for c in calls if c.startswith("bench/paired_bootstrap.py")]
    assert f"{run_dir}/ranks-learned-sft.csv" in bootstrap and "longer/ranks-paper.csv" in bootstrap


def test_grpo_rewards_without_the_sft_model_stops_before_anything_runs(tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    done, calls = run_grpo_rewards(tmp_path, run_dir)
    assert done.returncode == 2
    assert f"missing saved/STREAMRec-{DATASET}-learned-sft.pth" in done.stderr
    assert calls == []


def test_summary_rewrites_the_readme_copy_of_its_table(tmp_path) -> None:
    write_folder(tmp_path / "a", {"tiger": 0.04, "learned": {"sft": 0.03, "rl": 0.02}}, {})
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- equal-time-summary:begin -->\n| stale |\n<!-- equal-time-summary:end -->\noutro\n")
    done = run_summary(("x", tmp_path / "a"), extra=("--readme", str(readme)))
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "| stale |" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| x | 0.0400 | 0.0300 |" in text
    readme.write_text("no markers\n")
    done = run_summary(("x", tmp_path / "a"), extra=("--readme", str(readme)))
    assert done.returncode == 1 and "README.md: no <!-- equal-time-summary:begin -->" in done.stderr


def test_the_readme_summary_is_the_committed_one() -> None:
    """README.md's table is summary.md's (summary.sh writes both); a hand edit of either fails here."""
    summary = (ROOT / "docs/results/amazon2018-scientific-cpu/equal-time-summary/summary.md").read_text()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- equal-time-summary:begin -->\n")[1].split("\n<!-- equal-time-summary:end -->")[0]
    assert block == "\n".join(line for line in summary.splitlines() if line.startswith("|"))
