"""Analysis: bandit baselines, regret curves, the adaptation and compare commands."""
import csv
import json

import numpy as np
import pytest

from evaluation_helpers import make_run, one_thread, tiny_config
from srwm_rl.app import cli
from srwm_rl.eval.analysis import (aggregate, bandit_arm_probs, cumulative_regret_curve, final_values, group_runs,
                                   read_run, thompson_regret, ucb1_regret)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()


def test_bandit_tasks_match_the_environment():
    import envs
    env = envs.make("srwm_rl/Bandit-v0", 1, 0, task_split="test")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0]))
    inner = env.unwrapped.envs[0].unwrapped
    np.testing.assert_allclose(bandit_arm_probs([int(info["task_id"][0])], 5)[0], inner.arm_probs)


def test_baselines_regret_is_zero_on_equal_arms_and_beats_uniform_play():
    rng = np.random.default_rng(0)
    flat = np.full((4, 3), 0.5)
    assert thompson_regret(flat, 50, rng).sum() == 0 and ucb1_regret(flat, 50, rng).sum() == 0
    probs = np.tile([0.9, 0.1, 0.1], (200, 1))
    uniform = (0.9 - probs.mean(1)).mean() * 100                            # expected regret of random play
    ts, ucb = thompson_regret(probs, 100, rng), ucb1_regret(probs, 100, rng)
    assert ts.sum(1).mean() < ucb.sum(1).mean() < uniform
    assert (ucb[:, :3].sum(1) == 1.6).all()                                 # UCB1 tries each arm once first


def test_cumulative_regret_curve():
    curve = cumulative_regret_curve(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert [c["mean"] for c in curve] == [0.5, 0.5, 1.5] and curve[-1]["pull"] == 3 and curve[0]["n"] == 2


def test_adaptation_bandit_writes_regret_against_baselines(tmp_path, capsys):
    run = make_run(tmp_path / "bandit", tiny_config("srwm_rl/Bandit-v0"))
    out = tmp_path / "out"
    assert cli.main(["adaptation", str(run), str(run), "--labels", "a", "b", "--num-trials", "4",
                     "--num-envs", "4", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "regret.csv")))
    assert {r["method"] for r in rows} == {"a", "b", "Thompson sampling", "UCB1"}
    assert max(int(r["pull"]) for r in rows) == 100
    a = [float(r["mean_cumulative_regret"]) for r in rows if r["method"] == "a"]
    assert a == sorted(a)                                                   # cumulative: never decreases
    assert (out / "regret.png").stat().st_size > 0 and (out / "adaptation.png").exists()
    assert "Thompson sampling" in capsys.readouterr().out


def test_adaptation_trials_csv(tmp_path, capsys):
    run = make_run(tmp_path / "dark", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=3))
    out = tmp_path / "out"
    assert cli.main(["adaptation", str(run), "--num-trials", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "adaptation.csv")))
    mine = [r for r in rows if r["label"] != "untrained srwm"]
    assert [int(r["episode_in_trial"]) for r in mine] == [0, 1, 2] and all(r["n"] == "2" for r in mine)
    assert [int(r["episode_in_trial"]) for r in rows if r["label"] == "untrained srwm"] == [0, 1, 2]
    printed = capsys.readouterr().out
    assert "sampled actions" in printed and "warning: one training seed" in printed


def test_adaptation_needs_trials(tmp_path, capsys):
    run = make_run(tmp_path / "tmaze", tiny_config("srwm_rl/TMaze-v0"))
    with pytest.raises(SystemExit) as e:
        cli.main(["adaptation", str(run), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--trial-episodes" in capsys.readouterr().err


def _fake_run(path, seed, kind, values):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"seed": seed, "run_dir": str(path), "core": {"kind": kind}}))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "time", "episode_return"])
        for i, v in enumerate(values):
            w.writerow([(i + 1) * 100, 0, v])
    return path


def test_compare_groups_seeds_and_plots(tmp_path, capsys):
    runs = [_fake_run(tmp_path / "s1", 1, "srwm", [0, 1, 2]), _fake_run(tmp_path / "s2", 2, "srwm", [2, 3, 4]),
            _fake_run(tmp_path / "l1", 1, "lstm", [0, 0, 0])]
    groups = group_runs([read_run(r) for r in runs])
    assert sorted(groups) == ["core.kind=lstm", "core.kind=srwm"]
    a = aggregate(groups["core.kind=srwm"])
    assert a["n"] == 2 and a["mean"][0] == 1.0 and a["mean"][-1] == 3.0
    assert a["std"][-1] == pytest.approx(np.std([2, 4], ddof=1))
    out = tmp_path / "cmp.png"
    assert cli.main(["compare", *map(str, runs), "--out", str(out), "--final-window", "2"]) == 0
    assert out.stat().st_size > 0 and out.with_suffix(".csv").exists()
    printed = capsys.readouterr().out
    assert "core.kind=srwm" in printed and "mean of last 2 logs" in printed
    # final value: each run's mean of its last 2 logs (1.5 and 3.5), then the mean over runs
    srwm_line = next(line for line in printed.splitlines() if line.startswith("core.kind=srwm"))
    assert " 2.50 ± 1.41" in srwm_line and "warning: one run (seed) in core.kind=lstm" in printed
    assert list(final_values(groups["core.kind=srwm"], 2)) == [1.5, 3.5]


def test_compare_missing_run_dir_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", str(tmp_path / "nope")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
