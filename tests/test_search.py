"""srwm_rl.eval.search: cell visits per episode of the trial, against a step-by-step count of the env."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from srwm_rl.eval.rollout import run_episodes
from srwm_rl.eval.rollout import EpisodeRecord
from srwm_rl.eval.search import cell_visits, find_and_return, goal_cell_shares


class RandomPolicy(torch.nn.Module):
    """Uniform actions over Dark Room's 5 moves, the policy interface run_episodes uses."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def initial_state(self, n, device=None):
        return ()

    def step(self, obs, state, first):
        n = first.shape[0]
        return torch.distributions.Categorical(logits=torch.zeros(n, 5)), torch.zeros(n), state


def test_cell_visits_count_every_step_of_every_episode_where_the_env_puts_the_agent():
    size, length, trials = 4, 6, 10
    make = lambda: envs.make("srwm_rl/DarkRoom-v0", num_envs=3, seed=0, trial_episodes=2,      # noqa: E731
                             size=size, episode_length=length)
    visits, records = cell_visits(RandomPolicy(), make(), trials, size, seed=5)
    # Reference: the same rollout (same seeds), counting each acted-on observation by hand.
    ref = np.zeros((2, size, size))
    seen_episode = np.zeros(3, np.int64)

    def on_step(obs, dist, state, info):
        for i in range(3):
            if info["active"][i]:
                r, c = int(obs[i][0]), int(obs[i][1])
                ref[seen_episode[i], r, c] += 1
        seen_episode[:] = info["trial_episode"]
    run_episodes(RandomPolicy(), make(), trials, deterministic=False, seed=5, on_step=on_step)
    np.testing.assert_array_equal(visits, ref)
    assert visits.sum(axis=(1, 2)).tolist() == [trials * length] * 2      # every step of every counted episode
    centre = size // 2
    assert (visits[:, centre, centre] >= trials).all()                     # each episode starts at the centre


def test_goal_cell_shares_and_bad_inputs():
    visits = np.zeros((2, 2))
    visits[0, 0], visits[1, 1] = 3, 1                                       # cells 0 and 3
    s = goal_cell_shares(visits, train_ids=[0, 1], test_ids=[2, 3])
    assert s == {"per_training_cell": 0.375, "per_held_out_cell": 0.125, "held_out_total": 0.25,
                 "uniform_per_cell": 0.25}
    plain = envs.make("srwm_rl/DarkRoom-v0", num_envs=2, seed=0, size=4)
    with pytest.raises(ValueError, match="needs an env in trials"):
        cell_visits(RandomPolicy(), plain, 2, 4)
    wrong_size = envs.make("srwm_rl/DarkRoom-v0", num_envs=2, seed=0, trial_episodes=2, size=4)
    with pytest.raises(ValueError, match="not raw cells of a 2x2 room"):
        cell_visits(RandomPolicy(), wrong_size, 2, 2)


def _trials(returns: list[list[float]]) -> list[EpisodeRecord]:
    """Records of trials with the given per-episode returns, shuffled as a batched rollout interleaves them."""
    out = [EpisodeRecord(env_index=i % 3, game="", seed=0, trial=i, episode_in_trial=k, ret=r, length=5,
                         success=float("nan")) for i, rets in enumerate(returns) for k, r in enumerate(rets)]
    return [out[j] for j in np.random.default_rng(0).permutation(len(out))]


def test_find_and_return_splits_the_last_episode_into_finding_and_coming_back():
    returns = [[0, 0, 0],       # never found
               [0, 0, 4],       # found only in the last episode (a late search, not a return)
               [2, 5, 5],       # found in episode 1, back every episode
               [0, 3, 0],       # found in episode 2, not back in the last
               [1, 0, 6]]       # found, lost, back
    partial = EpisodeRecord(env_index=0, game="", seed=0, trial=99, episode_in_trial=0, ret=7.0, length=5,
                            success=float("nan"))
    got = find_and_return(_trials(returns) + [partial])                  # an incomplete trial is ignored
    assert got["trials"] == 5
    assert got["found_by"] == [0.4, 0.6, 0.8]
    assert got["found_before_last"] == 0.6
    assert got["returned"] == pytest.approx(2 / 3)
    assert got["last_if_found"] == pytest.approx((5 + 0 + 6) / 3)
    assert got["last_if_not_found"] == pytest.approx((0 + 4) / 2)
    last_mean = np.mean([r[-1] for r in returns])
    f = got["found_before_last"]
    assert f * got["last_if_found"] + (1 - f) * got["last_if_not_found"] == pytest.approx(last_mean)
    never = find_and_return(_trials([[0, 0], [0, 1]]))
    assert np.isnan(never["returned"]) and np.isnan(never["last_if_found"]) and never["last_if_not_found"] == 0.5
    with pytest.raises(ValueError, match=">= 2 episodes"):
        find_and_return(_trials([[1], [0]]))
    with pytest.raises(ValueError, match=">= 2 episodes"):
        find_and_return([])


def test_darkroom_search_scores_a_control_run_on_another_partition(tmp_path, monkeypatch, capsys):
    """benchmarks/darkroom_search.py: a run trained on every goal (test_fraction 0) has no held-out goals
    of its own (exit 2 naming the fix); --split scores it on the named partition's cells."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from envs.meta.darkroom import DarkRoom
    from evaluation_helpers import make_run, tiny_config

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "darkroom_search.py"
    spec = importlib.util.spec_from_file_location("darkroom_search", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    kwargs = {"size": 4, "episode_length": 5, "test_fraction": 0}
    run = make_run(tmp_path / "control", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=2, kwargs=kwargs))
    monkeypatch.setattr(sys, "argv", ["darkroom_search.py", str(run), "--trials", "4"])
    assert script.main() == 2
    assert "give a partition with --split" in capsys.readouterr().err
    single = make_run(tmp_path / "single", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=1, kwargs=kwargs))
    monkeypatch.setattr(sys, "argv", ["darkroom_search.py", str(single), "--trials", "4"])
    assert script.main() == 2          # one episode per trial: nothing to come back in
    err = capsys.readouterr().err
    assert "trials of >= 2 episodes" in err and "trial_episodes=1" in err
    split = {"test_fraction": 0.25, "split_seed": 3}
    monkeypatch.setattr(sys, "argv", ["darkroom_search.py", str(run), "--trials", "4", "--split", json.dumps(split)])
    assert script.main() == 0
    out = json.loads((run / "darkroom_search.json").read_text())
    expected = DarkRoom(size=4, **split).task_ids("test")
    assert out["held_out_cells"] == [list(divmod(int(t), 4)) for t in expected] and len(expected) == 4
    assert out["env_kwargs"] == {**kwargs, **split} and len(out["episodes"]) == 2
    room = DarkRoom(size=4, **split)      # start (2, 2); distances by brute force over the grid
    dist = {g: abs(g // 4 - 2) + abs(g % 4 - 2) for g in range(16)}
    for name, ids in (("held_out", room.task_ids("test")), ("training", room.task_ids("train"))):
        assert out["steps_from_start"][name] == pytest.approx(np.mean([dist[int(g)] for g in ids]))
    for e in out["episodes"]:  # the count and the shares come from the same visits, on the named cells
        steps = 4 * 5              # trials x episode_length
        assert e["held_out_steps"] == round(e["held_out_total"] * steps)
        assert e["per_held_out_cell"] * 4 + e["per_training_cell"] * 12 == pytest.approx(1.0)
    for goals in ("training", "held_out"):   # the finding/returning split of the same rollouts' last episode
        f = out["find_and_return"][goals]
        assert f["trials"] == 4 and len(f["found_by"]) == 2 and f["found_before_last"] == f["found_by"][0]
    last = out["episodes"][-1]["return_held_out"]
    f = out["find_and_return"]["held_out"]
    parts = [(f["found_before_last"], f["last_if_found"]), (1 - f["found_before_last"], f["last_if_not_found"])]
    assert sum(w * v for w, v in parts if w > 0) == pytest.approx(last)


def _fake_search(folder, held, train, found, returned, kwargs=None):
    """A darkroom_search.json with the given per-episode returns and find/return shares."""
    import json
    folder.mkdir(parents=True)
    eps = [{"episode": k + 1, "return_held_out": h, "return_train": t} for k, (h, t) in enumerate(zip(held, train))]
    fr = {g: {"found_before_last": found[g], "returned": returned[g]} for g in ("held_out", "training")}
    (folder / "darkroom_search.json").write_text(json.dumps(
        {"env_kwargs": kwargs or {}, "held_out_cells": [[0, 1]], "episodes": eps, "find_and_return": fr}))
    return str(folder)


def test_darkroom_seeds_averages_runs_with_t_intervals_and_refuses_mixed_partitions(tmp_path, monkeypatch, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    from scipy import stats

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "darkroom_seeds.py"
    spec = importlib.util.spec_from_file_location("darkroom_seeds", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    f, r = {"held_out": 0.5, "training": 0.7}, {"held_out": 1.0, "training": 0.9}
    runs = [_fake_search(tmp_path / "a", [1, 4], [2, 10], f, r), _fake_search(tmp_path / "b", [2, 6], [3, 8], f, r),
            _fake_search(tmp_path / "c", [0, 5], [1, 5], f, r)]
    s = script.summarize([script._load(x) for x in runs])
    ratios = [4 / 10, 6 / 8, 5 / 5]   # held-out last over training last, per run
    assert s["held_out_last_over_training_last"]["values"] == pytest.approx(ratios)
    half = stats.t.ppf(0.975, 2) * np.std(ratios, ddof=1) / np.sqrt(3)
    assert s["held_out_last_over_training_last"]["ci95"] == pytest.approx((np.mean(ratios) - half, np.mean(ratios) + half))
    assert s["held_out_last_over_first"]["values"][:2] == pytest.approx([4.0, 3.0])
    assert np.isnan(s["held_out_last_over_first"]["values"][2])     # a first episode of 0: no ratio
    assert s["held_out_last_over_first"]["n"] == 2
    assert s["training_2"]["mean"] == pytest.approx(23 / 3) and s["held_out_returned"]["mean"] == 1.0
    monkeypatch.setattr(sys, "argv", ["darkroom_seeds.py", *runs])
    assert script.main() == 0 and "held_out_last_over_training_last: 0.72" in capsys.readouterr().out
    other = _fake_search(tmp_path / "d", [1, 2], [1, 2], f, r, kwargs={"split_seed": 1})
    monkeypatch.setattr(sys, "argv", ["darkroom_seeds.py", runs[0], other])
    assert script.main() == 2 and "another goal partition" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["darkroom_seeds.py", str(tmp_path / "missing")])
    assert script.main() == 2 and "no darkroom_search.json" in capsys.readouterr().err
