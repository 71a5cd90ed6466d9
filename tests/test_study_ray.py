"""``srwm-rl study --executor ray``: the cells of a tiny grid run as Ray tasks on a local Ray instance,
and a rerun skips them."""
from __future__ import annotations

import pytest

pytest.importorskip("ray")

from srwm_rl.app.cli import main  # noqa: E402
from srwm_rl.eval.study_report import read_results  # noqa: E402


@pytest.mark.slow       # ~30 s: a Ray instance of its own, one process per cell
def test_tiny_study_on_ray_runs_every_cell_and_a_rerun_skips_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "study"
    argv = ["study", "--cores", "srwm", "none", "--tasks", "tmaze", "--seeds", "1", "--steps", "512",
            "--eval-trials", "4", "--jobs", "2", "--executor", "ray", "--out", str(out)]
    assert main(argv) == 0
    assert "2 to run" in capsys.readouterr().out
    rows = read_results(out / "report" / "results.csv")
    assert {(r["core"], r["seed"]) for r in rows if r["metric"] == "score"} == {("srwm", 1), ("none", 1)}
    import ray
    assert not ray.is_initialized(), "the executor ended the Ray instance it started"
    assert main(argv) == 0
    assert "2 finished, 0 to run" in capsys.readouterr().out
