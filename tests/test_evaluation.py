"""Evaluation: per-env quotas, trial indices, determinism, statistics and normalised Procgen scores."""
import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch

from envs.testing import CountingEnv
from envs.trials import TrialVecEnv
from evaluation_helpers import FixedPolicy, make_run, one_thread, tiny_config
from srwm_rl.app import cli
from envs.families import level_overlap
from srwm_rl.eval.evaluate import evaluate, summarize
from srwm_rl.eval.procgen_scores import normalized_score
from srwm_rl.eval.rollout import EpisodeRecord, run_episodes
from srwm_rl.eval.stats import adaptation_curve, mean_ci


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()


@pytest.fixture(scope="module")
def dark_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "dark", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=3))


@pytest.fixture(scope="module")
def leaper_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "leaper", tiny_config("procgen:leaper"))


def rec(game, ret, k=0, trial=0, success=math.nan):
    return EpisodeRecord(0, game, -1, trial, k, ret, 10, success)


# ---- run_episodes on a counting env -------------------------------------------------------------

def test_quota_per_env_counts_long_and_short_episodes_alike():
    env = CountingEnv([3, 5], num_actions=2)
    records = run_episodes(FixedPolicy([0.0, 50.0]), env, 4)       # greedy action 1
    assert [(r.env_index, r.length) for r in records] == [(0, 3), (0, 3), (1, 5), (1, 5)]
    assert [r.trial for r in records] == [0, 1, 2, 3]
    # reward = action + 0.01 * t: the return of an episode of length L is L + 0.01 * L(L-1)/2
    assert records[0].ret == pytest.approx(3 + 0.03) and records[2].ret == pytest.approx(5 + 0.10)
    assert all(r.seed == -1 and math.isnan(r.success) for r in records)


def test_uneven_quota_and_fewer_episodes_than_envs():
    records = run_episodes(FixedPolicy([0.0, 0.0]), CountingEnv([2, 2, 2]), 4)
    assert sorted(r.env_index for r in records) == [0, 0, 1, 2]
    assert [r.env_index for r in run_episodes(FixedPolicy([0.0, 0.0]), CountingEnv([2, 9, 9]), 1)] == [0]


def test_trial_episode_indices():
    env = TrialVecEnv(CountingEnv([3, 5], num_actions=2), 3)
    records = run_episodes(FixedPolicy([1.0, 0.0]), env, 3)
    assert len(records) == 9
    assert [(r.trial, r.episode_in_trial) for r in records] == [(t, k) for t in range(3) for k in range(3)]
    assert [r.env_index for r in records] == [0] * 6 + [1] * 3
    assert [r.length for r in records] == [3] * 6 + [5] * 3
    curve = adaptation_curve(records)
    assert [c["episode_in_trial"] for c in curve] == [0, 1, 2] and all(c["n"] == 3 for c in curve)


def test_num_episodes_must_be_positive():
    with pytest.raises(ValueError, match="num_episodes"):
        run_episodes(FixedPolicy([0.0, 0.0]), CountingEnv([2]), 0)


def test_sampling_is_deterministic_under_a_seed_and_leaves_the_global_rng_alone():
    policy = FixedPolicy([0.0, 0.0])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = run_episodes(policy, CountingEnv([4, 6]), 6, deterministic=False, seed=5)
    assert torch.rand(1) == before                      # the caller's torch stream is untouched
    b = run_episodes(policy, CountingEnv([4, 6]), 6, deterministic=False, seed=5)
    c = run_episodes(policy, CountingEnv([4, 6]), 6, deterministic=False, seed=6)
    assert a == b and a != c


def test_on_step_sees_actions_and_active_mask():
    seen = []
    run_episodes(FixedPolicy([0.0, 9.0]), CountingEnv([2, 4]), 2,
                 on_step=lambda obs, dist, state, info: seen.append((info["action"].copy(), info["active"].copy())))
    assert len(seen) == 4                                 # env 1 needs 4 steps; env 0 is done after 2
    assert all((a == 1).all() for a, _ in seen)
    assert [m.tolist() for _, m in seen] == [[True, True], [True, True], [False, True], [False, True]]


# ---- statistics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n,t975", [(2, 12.706), (4, 3.182), (31, 2.042), (61, 2.000), (1001, 1.962)])
def test_mean_ci_uses_students_t(n, t975):
    x = np.arange(n, dtype=float)                     # std = sqrt(n (n + 1) / 12)
    s = mean_ci(x)
    half = (s["ci95"][1] - s["ci95"][0]) / 2
    assert half == pytest.approx(t975 * x.std(ddof=1) / math.sqrt(n), rel=2e-4)     # printed t-table values


def test_mean_ci():
    s = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182 * math.sqrt(5 / 3) / 2                  # t(3) * std / sqrt(n)
    assert s["n"] == 4 and s["mean"] == 2.5 and s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert s["ci95"] == pytest.approx((2.5 - half, 2.5 + half), abs=1e-3)   # t(3) = 3.182 as printed, 4 digits
    one = mean_ci([7.0])
    assert one["mean"] == 7.0 and math.isnan(one["std"]) and math.isnan(one["ci95"][0])


def test_normalised_scores_match_hand_computed_values():
    assert normalized_score("coinrun", 7.5, "easy") == pytest.approx(0.5)          # (7.5 - 5) / (10 - 5)
    assert normalized_score("starpilot", 33.25, "easy") == pytest.approx(0.5)      # (33.25 - 2.5) / 61.5
    assert normalized_score("bigfish", 10.0, "hard") == pytest.approx(0.25)        # (10 - 0) / 40
    assert normalized_score("fruitbot", -1.5, "easy") == pytest.approx(0.0)
    assert normalized_score("maze", 7.0, "memory") is None
    records = [rec("coinrun", 10.0), rec("coinrun", 5.0), rec("bigfish", 40.0), rec("bigfish", 1.0)]
    s = summarize(records, "easy")
    assert s["per_game"]["coinrun"]["normalized"] == pytest.approx(0.5)
    assert s["per_game"]["bigfish"]["normalized"] == pytest.approx(0.5)           # mean 20.5 -> 19.5 / 39
    assert s["normalized_score"] == pytest.approx(0.5)
    s = summarize([rec("coinrun", 10.0), rec("bigfish", 1.0)], "easy")
    assert s["normalized_score"] == pytest.approx(0.5)                              # (1.0 + 0.0) / 2


def test_summary_of_trials():
    records = [rec("g", r, k, t, success=float(r > 0)) for t, rs in enumerate([[0, 1], [1, 1]]) for k, r in enumerate(rs)]
    s = summarize(records)
    assert s["trial_return"]["mean"] == 1.5 and s["success"] == 0.75
    assert [a["mean"] for a in s["adaptation"]] == [0.5, 1.0]
    assert s["normalized_score"] is None


def test_level_overlap():
    assert level_overlap((0, 200), (1000, 200)) == 0
    assert level_overlap((0, 200), (150, 100)) == 50
    assert level_overlap((0, 0), (1000, 200)) == 200             # trained on every level
    assert level_overlap((0, 200), (0, 0)) == 200


# ---- evaluate a checkpoint ----------------------------------------------------------------------

def test_evaluate_in_context_tasks_is_deterministic(dark_run):
    a, sa = evaluate(dark_run, num_episodes=3, num_envs=2, deterministic=False, seed=1)
    b, _ = evaluate(dark_run / "checkpoints" / "latest.pt", num_episodes=3, num_envs=2, deterministic=False, seed=1)
    assert a == b
    assert len(a) == 9 and sa["trial_episodes"] == 3 and sa["levels"]["task_split"] == "test"
    assert [r.episode_in_trial for r in a] == [0, 1, 2] * 3
    for t in range(3):                                    # one task per trial, all from the test split
        assert len({r.seed for r in a if r.trial == t}) == 1
    from envs.meta.darkroom import DarkRoom
    test_ids = set(DarkRoom(task_split="test").task_ids("test").tolist())
    assert {r.seed for r in a} <= test_ids
    no_trials, s = evaluate(dark_run, num_episodes=2, num_envs=2, trial_episodes=0)
    assert len(no_trials) == 2 and s["trial_episodes"] == 0


def test_evaluate_cli_writes_csv_rows_on_the_requested_levels(leaper_run, tmp_path, capsys):
    out = tmp_path / "ev"
    code = cli.main(["evaluate", str(leaper_run), "--start-level", "500", "--num-levels", "3", "--num-episodes", "4",
                     "--num-envs", "4", "--sample", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert len(rows) == 4 and {r["game"] for r in rows} == {"leaper"}
    assert all(500 <= int(r["seed"]) < 503 for r in rows)
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_game"]["leaper"]["n"] == 4 and summary["levels"]["overlap_levels"] == 0
    expected = np.mean([(float(r["return"]) - 1.5) / 8.5 for r in rows])
    assert summary["normalized_score"] == pytest.approx(expected)
    printed = capsys.readouterr().out
    assert "leaper" in printed and "normalised" in printed


def test_overlapping_levels_warn_with_the_count(leaper_run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(leaper_run, start_level=190, num_levels=20, num_episodes=1, num_envs=1)
    assert any("10 of the 20 evaluation levels are training levels" in str(w.message) for w in caught)


@pytest.mark.parametrize("argv, message", [
    (["--games", "coinrum"], "coinrum"),
    (["--start-level", "-5"], "start_level=-5"),
    (["--num-levels", "-1"], "num_levels=-1"),
    (["--num-episodes", "0"], "--num-episodes=0"),
])
def test_evaluate_bad_procgen_arguments_exit_2(leaper_run, argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(leaper_run), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_bad_targets_exit_2(tmp_path, dark_run, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(tmp_path / "missing")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((dark_run / "checkpoints" / "latest.pt").read_bytes()[:500])
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(corrupt)])
    assert e.value.code == 2 and "corrupt" in capsys.readouterr().err
    ckpt = torch.load(dark_run / "checkpoints" / "latest.pt", weights_only=True)
    ckpt["config"]["core"]["kind"] = "lstm"                # weights of an SRWM, config of an LSTM
    foreign = tmp_path / "foreign.pt"
    torch.save(ckpt, foreign)
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(foreign)])
    assert e.value.code == 2 and "does not fit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(dark_run), "--games", "coinrun"])
    assert e.value.code == 2 and "Procgen only" in capsys.readouterr().err
