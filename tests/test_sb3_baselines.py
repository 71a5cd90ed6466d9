"""The Stable-Baselines3 baselines run in the same harness: run directory, metrics, checkpoints, resume."""
import pytest

from srwm_rl.app.cli import main
from srwm_rl.run.checkpoint import load_checkpoint

TINY = ["--env.id", "srwm_rl/CartPoleNoVel-v0", "--no-policy.prev_action", "--no-policy.prev_reward",
        "--env.num_envs", "4", "--ppo.num_steps", "32", "--ppo.num_minibatches", "2", "--ppo.update_epochs", "1",
        "--checkpoint_every", "2", "--torch_threads", "1", "--no-progress"]


@pytest.mark.parametrize("algo", ["sb3-ppo", "sb3-recurrent-ppo"])
def test_sb3_train_resume_and_clear_refusal_to_evaluate(algo, tmp_path, capsys, monkeypatch):
    import tempfile
    temp = tmp_path / "systemp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))   # where SB3's default logger would make a folder
    run = tmp_path / algo
    assert main(["train", "--algo", algo, *TINY, "--total_steps", "256", "--run_dir", str(run)]) == 0
    assert {"config.json", "metrics.csv", "checkpoints", "tb"} <= {p.name for p in run.iterdir()}
    assert load_checkpoint(run)["global_step"] == 256 and (run / "checkpoints" / "best.pt").exists()
    assert main(["train", "--resume", str(run), "--total_steps", "512", "--no-progress"]) == 0
    assert load_checkpoint(run)["global_step"] == 512
    rows = (run / "metrics.csv").read_text().splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == sorted(steps) and steps[-1] == 512
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(run)])
    assert e.value.code == 2 and "another library's" in capsys.readouterr().err
    assert not [p for p in temp.iterdir() if p.name.startswith("SB3-")]   # no SB3 log folder left there
    rows = [r.split(",") for r in rows]
    assert any(h.startswith("loss/") for h in rows[0])   # SB3's losses still reach the metrics
