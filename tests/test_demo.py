"""`srwm-rl demo`: the held-out curve is shown next to the same agent's curve on training tasks."""
from __future__ import annotations

import json

import pytest

from srwm_rl.app.demo import report


def rows(means):
    return [{"episode_in_trial": k, "mean": m, "ci95": (m - 0.5, m + 0.5)} for k, m in enumerate(means)]


def test_report_puts_held_out_next_to_training_tasks_with_both_ratios():
    text = report(rows([0.4, 0.3]), rows([1.0, 3.0]), rows([2.0, 6.0]))
    lines = text.splitlines()
    assert "untrained, held-out" in lines[2] and "trained, training tasks" in lines[2]
    assert lines[3].split("|")[0].strip() == "1" and "1.00 [ 0.50,  1.50]" in lines[3] and "2.00" in lines[3]
    assert "last / first episode = 3.00 (adapts within the trial)" in text
    assert "training-task last episode = 0.50" in text
    flat = report(rows([0.0]), rows([0.0, 0.0]), rows([0.0, 0.0]))
    assert "= n/a (no in-context improvement yet)" in flat
    search = {"per_held_out_cell": 0.0, "per_training_cell": 0.05, "uniform_per_cell": 0.04, "held_out_cells": 5}
    line = report(rows([0.4]), rows([1.0]), rows([2.0]), search).splitlines()[-1]
    assert line.startswith("where it searches") and "0.0% of its steps per held-out goal cell (5 cells)" in line
    assert "5.0% per training goal cell (uniform: 4.0%)" in line
    found = {"training": {"found_before_last": 1.0, "returned": 0.99},
             "held_out": {"found_before_last": 0.64, "returned": float("nan")}}
    last = report(rows([0.4]), rows([1.0]), rows([2.0]), search, found).splitlines()[-1]
    assert last == ("finding and coming back: the goal is found before the last episode in 64% of held-out "
                    "trials (100% on training goals); of those, n/a are back on it in the last episode (99%)")


def test_demo_command_runs_end_to_end(tmp_path, capsys):
    from srwm_rl.app.cli import main
    assert main(["demo", "--run_dir", str(tmp_path / "demo"), "--total_steps", "1536", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "trained, training tasks" in out and "held-out last episode / training-task last episode" in out
    saved = json.loads((tmp_path / "demo" / "adaptation.json").read_text())
    assert set(saved) == {"untrained", "trained", "trained_training_tasks", "first_episode_search", "find_and_return"}
    assert len(saved["trained"]) == 4 and "where it searches (training tasks, episode 1)" in out
    assert "finding and coming back: the goal is found before the last episode in" in out
    assert [len(saved["find_and_return"][g]["found_by"]) for g in ("held_out", "training")] == [4, 4]
    search = saved["first_episode_search"]
    assert search["held_out_cells"] == 5 and search["uniform_per_cell"] == 1 / 25
    assert 20 * search["per_training_cell"] + 5 * search["per_held_out_cell"] == pytest.approx(1.0)
    assert (tmp_path / "demo" / "adaptation.png").exists()
