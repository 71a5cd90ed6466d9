"""srwm-rl study: grid expansion, bad input (exit 2 before anything runs), finished cells skipped, the
CI-separation rule against scipy, bandit baselines against simple references, the report from a
prepared results CSV; one slow end-to-end run of a tiny grid (real training), rerun and resumed."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from srwm_rl.app import study, study_exec
from srwm_rl.app.cli import main
from srwm_rl.app.study_cells import CellSpec, build_config, is_finished
from srwm_rl.app.study_tasks import STUDY_TASKS, StudyTask
from srwm_rl.eval.analysis import random_regret, thompson_regret, ucb1_regret
from srwm_rl.eval.stats import mean_ci
from srwm_rl.eval.study_report import better_core, read_results, separated, write_report, write_results


def args(**kw) -> study.StudyArgs:
    return study.StudyArgs(**kw)


# ---- grid ----------------------------------------------------------------------------------------------

def test_grid_is_every_core_task_and_seed_seed_major():
    cells = study.expand_grid(args(cores=("srwm", "lstm"), tasks=("bandit", "tmaze"), seeds=3, first_seed=4))
    assert len(cells) == 2 * 2 * 3
    assert len({c.name for c in cells}) == 12
    assert [c.seed for c in cells] == [4] * 4 + [5] * 4 + [6] * 4
    assert {(c.task, c.core) for c in cells if c.seed == 5} == {(t, k) for t in ("bandit", "tmaze")
                                                                  for k in ("srwm", "lstm")}


def test_budgets_full_quick_and_override_are_equal_across_cores():
    full = study.expand_grid(args(tasks=("darkroom",)))
    quick = study.expand_grid(args(tasks=("darkroom",), quick=True))
    forced = study.expand_grid(args(tasks=("darkroom",), quick=True, steps=123, eval_trials=7))
    assert {c.total_steps for c in full} == {STUDY_TASKS["darkroom"].steps}
    assert {c.total_steps for c in quick} == {STUDY_TASKS["darkroom"].quick_steps}
    assert {(c.total_steps, c.eval_trials) for c in forced} == {(123, 7)}


def test_cell_config_is_the_preset_with_core_seed_budget_and_the_cores_learning_rate(monkeypatch):
    spec = CellSpec("tmaze", "lstm", 3, 5000, 10, True)
    cfg = build_config(spec, "x")
    assert (cfg.core.kind, cfg.seed, cfg.total_steps, cfg.torch_threads, cfg.env.id) == \
        ("lstm", 3, 5000, 1, "srwm_rl/TMaze-v0")
    assert cfg.ppo.learning_rate == 1e-3                              # the preset's
    tuned = replace(STUDY_TASKS["tmaze"], learning_rates={"lstm": 2.5e-4})
    monkeypatch.setitem(STUDY_TASKS, "tmaze", tuned)
    assert build_config(spec).ppo.learning_rate == 2.5e-4
    assert build_config(replace(spec, core="srwm")).ppo.learning_rate == 1e-3


# ---- bad input: exit 2 naming the option, nothing written -------------------------------------------

@pytest.mark.parametrize("argv, named", [
    (["--cores", "gru"], "--cores gru"),
    (["--tasks", "pong"], "--tasks pong"),
    (["--seeds", "0"], "--seeds=0"),
    (["--steps", "0"], "--steps=0"),
    (["--steps", "-5"], "--steps=-5"),
    (["--eval-trials", "0"], "--eval-trials=0"),
    (["--jobs", "-1"], "--jobs=-1"),
    (["--executor", "slurm"], "--executor 'slurm'"),
    (["--cores", "srwm", "srwm"], "--cores srwm srwm"),
])
def test_bad_input_exits_2_naming_the_option(tmp_path, capsys, argv, named):
    out = tmp_path / "s"
    with pytest.raises(SystemExit) as e:
        main(["study", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_a_task_with_an_unknown_preset_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(STUDY_TASKS, "broken", StudyTask("broken", preset="no-such-preset", steps=10, quick_steps=10,
                                                         eval_trials=2))
    with pytest.raises(SystemExit) as e:
        main(["study", "--tasks", "broken", "--out", str(tmp_path / "s")])
    assert e.value.code == 2
    assert "--tasks broken: its preset 'no-such-preset' is unknown" in capsys.readouterr().err


# ---- resumability: finished cells are skipped ------------------------------------------------------------

def _finish(cell_dir: Path, spec: CellSpec, value: float = 1.0) -> None:
    (cell_dir / "run" / "checkpoints").mkdir(parents=True)
    (cell_dir / "run" / "checkpoints" / "latest.pt").write_bytes(b"")
    (cell_dir / "result.json").write_text(json.dumps({"spec": asdict(spec), "algo": "ppo", "rows": [
        ["test", "return", 1, value], ["test", "score", 0, value], ["", "train_seconds", 0, 1.0]]}))


def test_is_finished_needs_the_checkpoint_and_the_result_of_this_spec(tmp_path):
    spec = CellSpec("tmaze", "srwm", 1, 100, 4, True)
    assert not is_finished(tmp_path, spec)
    _finish(tmp_path, spec)
    assert is_finished(tmp_path, spec)
    assert not is_finished(tmp_path, replace(spec, total_steps=200))
    (tmp_path / "run" / "checkpoints" / "latest.pt").unlink()
    assert not is_finished(tmp_path, spec)


def test_a_cell_another_process_holds_is_left_alone(tmp_path):
    import fcntl
    from srwm_rl.app.study_cells import run_cell
    spec = CellSpec("tmaze", "srwm", 1, 100, 4, True)
    (tmp_path / "cell.json").write_text(json.dumps(asdict(spec)))
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run_cell(tmp_path) == {"busy": True}
    assert not (tmp_path / "run").exists()


class Recorder:
    """An executor that records which cells it was asked to run (and runs none)."""
    calls: list[list[str]] = []

    def __init__(self, jobs):
        self.jobs = jobs

    def run(self, cell_dirs, on_done):
        Recorder.calls.append(sorted(Path(d).name for d in cell_dirs))
        return {d: 130 for d in cell_dirs}          # as if stopped by Ctrl-C


def test_rerun_runs_only_unfinished_cells_and_reports_the_finished(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(study_exec.EXECUTORS, "record", Recorder)
    monkeypatch.setattr(study, "EXECUTORS", study_exec.EXECUTORS)
    Recorder.calls = []
    a = args(cores=("srwm", "lstm"), tasks=("tmaze",), seeds=2, steps=100, eval_trials=4, out=str(tmp_path))
    dirs = study.prepare_cells(tmp_path, study.expand_grid(a), write=True)
    for spec, d in dirs.items():
        if spec.seed == 1:
            _finish(d, spec, value=float(spec.core == "srwm"))
    argv = ["study", "--cores", "srwm", "lstm", "--tasks", "tmaze", "--seeds", "2", "--steps", "100",
            "--eval-trials", "4", "--executor", "record", "--out", str(tmp_path)]
    status = main(argv)
    assert Recorder.calls == [["tmaze-lstm-s2", "tmaze-srwm-s2"]]
    assert status == 130                                    # the stopped cells are reported by their status
    assert "2 finished, 2 to run" in capsys.readouterr().out
    rows = read_results(tmp_path / "report" / "results.csv")
    assert {(r["core"], r["seed"]) for r in rows} == {("srwm", 1), ("lstm", 1)}
    # the same grid at another budget into the same directory is refused before anything runs
    with pytest.raises(SystemExit) as e:
        main([*argv[:-2], "--steps", "200", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "total_steps=100 (now 200)" in capsys.readouterr().err
    assert Recorder.calls == [["tmaze-lstm-s2", "tmaze-srwm-s2"]]


# ---- the CI-separation rule -------------------------------------------------------------------------------

def _scipy_interval(x):
    x = np.asarray(x, float)
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=x.std(ddof=1) / math.sqrt(len(x)))


def test_separation_agrees_with_scipy_intervals():
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(200):
        a, b = rng.normal(0, 1, 3), rng.normal(rng.uniform(0, 6), rng.uniform(0.1, 2), rng.integers(2, 6))
        (alo, ahi), (blo, bhi) = _scipy_interval(a), _scipy_interval(b)
        expected = ahi < blo or bhi < alo
        assert separated(mean_ci(a), mean_ci(b)) == expected
        agree += expected
    assert 20 < agree < 180                        # both outcomes were exercised


def test_better_core_only_where_its_interval_is_above_every_other():
    hi, mid, low = mean_ci([10.0, 10.5, 11.0]), mean_ci([5.0, 5.2, 4.9]), mean_ci([1.0, 1.1, 0.9])
    wide = mean_ci([0.0, 12.0, 6.0])
    assert better_core({"srwm": hi, "lstm": mid, "none": low}) == "srwm"
    assert better_core({"srwm": hi, "lstm": wide}) is None
    assert better_core({"srwm": low, "lstm": hi}) == "lstm"
    assert better_core({"srwm": hi}) is None
    assert better_core({"srwm": mean_ci([3.0]), "lstm": mean_ci([1.0])}) is None    # one seed: no interval


# ---- bandit baselines against simple references ------------------------------------------------------------

PROBS = np.array([0.9, 0.6, 0.5, 0.3, 0.1])


def _thompson_ref(p, pulls, rng):
    a, b, total = np.ones(len(p)), np.ones(len(p)), 0.0
    for _ in range(pulls):
        arm = int(np.argmax([rng.beta(a[i], b[i]) for i in range(len(p))]))
        r = rng.random() < p[arm]
        a[arm] += r
        b[arm] += 1 - r
        total += p.max() - p[arm]
    return total


def _ucb1_ref(p, pulls, rng):
    n, s, total = np.zeros(len(p)), np.zeros(len(p)), 0.0
    for t in range(pulls):
        arm = t if t < len(p) else int(np.argmax(s / n + np.sqrt(2 * math.log(t) / n)))
        r = rng.random() < p[arm]
        n[arm] += 1
        s[arm] += r
        total += p.max() - p[arm]
    return total


@pytest.mark.parametrize("fn, ref", [(thompson_regret, _thompson_ref), (ucb1_regret, _ucb1_ref)])
def test_baselines_match_a_per_run_loop_reference(fn, ref):
    runs, pulls = 300, 100
    ours = fn(np.repeat(PROBS[None], runs, 0), pulls, np.random.default_rng(1)).sum(1)
    rng = np.random.default_rng(2)
    theirs = np.array([ref(PROBS, pulls, rng) for _ in range(runs)])
    se = math.sqrt(ours.var(ddof=1) / runs + theirs.var(ddof=1) / runs)
    assert abs(ours.mean() - theirs.mean()) < 4 * se
    assert ours.mean() < 0.6 * (PROBS.max() - PROBS.mean()) * pulls          # well below random play


def test_random_regret_is_the_gap_to_the_mean_arm_and_ucb1_tries_each_arm_first():
    rnd = random_regret(np.repeat(PROBS[None], 2000, 0), 100, np.random.default_rng(0)).sum(1)
    ci = mean_ci(rnd)
    assert ci["ci95"][0] - 0.5 < 100 * (PROBS.max() - PROBS.mean()) < ci["ci95"][1] + 0.5
    first = ucb1_regret(PROBS[None], 5, np.random.default_rng(0))[0]
    assert np.allclose(first, PROBS.max() - PROBS)


# ---- the report from a prepared results CSV ------------------------------------------------------------------

def _rows():
    rows = []
    per_core = {"srwm": [2.0, 2.2, 2.1], "lstm": [1.0, 1.1, 0.9], "none": [0.5, 0.4, 0.6]}
    for core, last in per_core.items():
        for seed, v in zip((1, 2, 3), last):
            for k, ret in ((1, 0.3), (4, v)):
                rows += [dict(task="darkroom", core=core, seed=seed, split=s, metric="return", index=float(k),
                              value=ret * f) for s, f in (("test", 1.0), ("train", 2.0))]
            rows.append(dict(task="darkroom", core=core, seed=seed, split="test", metric="score", index=0.0, value=v))
            rows.append(dict(task="bandit", core=core, seed=seed, split="test", metric="score", index=0.0,
                             value=60.0 + seed))
            rows += [dict(task="bandit", core=core, seed=seed, split="test", metric="cumulative_regret",
                          index=float(t), value=0.2 * t) for t in (1, 2, 3)]
            rows += [dict(task="bandit", core=core, seed=seed, split="test", metric="task_id", index=float(j),
                          value=float(2**31 + j)) for j in range(4)]
            rows.append(dict(task="bandit", core=core, seed=seed, split="test", metric="num_arms", index=0.0, value=5.0))
            rows += [dict(task="darkroom", core=core, seed=seed, split="train", metric="learning_curve",
                          index=float(s), value=s / 100 + seed) for s in (100, 200, 300)]
    return rows


def test_report_from_a_prepared_results_csv(tmp_path):
    path = write_results(tmp_path / "results.csv", _rows())
    rows = read_results(path)
    assert len(rows) == len(_rows())
    meta = {"darkroom": {"preset": "darkroom", "algo": "ppo", "steps": 1000, "trials": 8, "note": "test goals"},
            "bandit": {"preset": "bandit", "algo": "ppo", "steps": 1000, "trials": 4, "note": "fresh",
                       "baselines": ["bandit"]}}
    md = write_report(tmp_path / "report", rows, meta, ["header line"]).read_text()
    srwm = mean_ci([2.0, 2.2, 2.1])
    assert f"| darkroom | last-episode return | {srwm['mean']:.2f} [{srwm['ci95'][0]:.2f}, {srwm['ci95'][1]:.2f}]" in md
    lines = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| darkroom") or
             line.startswith("| bandit")}
    assert lines["| darkroom"].endswith("| srwm |")                           # CIs separate
    assert lines["| bandit"].endswith("| no core (CIs overlap) |")            # identical cores
    assert "| srwm | train | 0.60 [0.60, 0.60] |" in md                       # train next to held-out
    for name in ("Thompson sampling", "UCB1", "random"):
        assert f"| {name} |" in md
    for f in ("summary.csv", "adaptation-darkroom.png", "learning-darkroom.png", "regret-bandit.png"):
        assert (tmp_path / "report" / f).stat().st_size > 0
    summary = (tmp_path / "report" / "summary.csv").read_text()
    assert "darkroom,srwm,test,better_core" in summary


# ---- end to end ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_study_end_to_end_rerun_and_resume(tmp_path, capsys):
    from srwm_rl.app.study_cells import run_cell
    out = tmp_path / "study"
    argv = ["study", "--cores", "srwm", "none", "--tasks", "tmaze", "bandit", "--seeds", "2", "--steps", "512",
            "--eval-trials", "4", "--jobs", "2", "--out", str(out)]
    assert main(argv) == 0
    md = (out / "report" / "summary.md").read_text()
    assert "## tmaze" in md and "## bandit" in md and "| Thompson sampling |" in md
    rows = read_results(out / "report" / "results.csv")
    assert {(r["task"], r["core"], r["seed"]) for r in rows if r["metric"] == "score"} == \
        {(t, c, s) for t in ("tmaze", "bandit") for c in ("srwm", "none") for s in (1, 2)}
    capsys.readouterr()
    assert main(argv) == 0                                             # rerun: nothing to run
    assert "8 finished, 0 to run" in capsys.readouterr().out
    # an unfinished cell resumes from its checkpoint: same cell, larger budget, result removed
    cell = out / "cells" / "tmaze-srwm-s1"
    spec = json.loads((cell / "cell.json").read_text())
    (cell / "cell.json").write_text(json.dumps({**spec, "total_steps": 3072}))
    (cell / "result.json").unlink()
    result = run_cell(cell)
    assert json.loads((cell / "timing.json").read_text())["segments"] == 2
    assert dict(((m, i), v) for s, m, i, v in result["rows"])[("env_steps", 0)] >= 3072


def test_readme_study_commands_parse_and_validate():
    import shlex
    from srwm_rl.app.command import parse
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [shlex.split(line.split("#")[0])[2:] for line in readme.splitlines()
             if line.strip().startswith(".venv/bin/srwm-rl study")]
    assert len(lines) >= 2
    for words in lines:
        study.validate(parse(study.StudyArgs, words, "srwm-rl study"))
