"""Videos: files decode with the expected frame count and size, overlays do not change actions, bad
paths fail before any rollout."""
import os

import imageio.v3 as iio
import numpy as np
import pytest

from evaluation_helpers import make_run, one_thread, tiny_config
from srwm_rl.app import cli
from srwm_rl.eval.rollout import run_episodes
from srwm_rl.eval.video import RolloutRecorder, VideoWriter, check_video_path, enable_frames
from srwm_rl.run.agent import load_agent
from srwm_rl.run.environment import make_env


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()


@pytest.fixture(scope="module")
def dark_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "dark", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=2))


@pytest.fixture(scope="module")
def leaper_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "leaper", tiny_config("procgen:leaper"))


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_writer_decodes_with_frame_count_and_size(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    w = VideoWriter(path, fps=10)
    for i in range(7):
        w.append(np.full((33, 50, 3), 30 * i, np.uint8))      # odd height: padded to 34
    w.close()
    frames = iio.imread(path, plugin="pyav" if suffix == ".mp4" else "pillow")
    assert frames.shape[:3] == (7, 34, 50)
    assert abs(int(frames[3, 10, 10, 0]) - 90) < 8            # the content survived encoding


def test_writer_keeps_colours_from_rgb_and_bgr_frames(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    w = VideoWriter(tmp_path / "c.mp4")
    w.append(red)
    w.append(np.ascontiguousarray(red[..., ::-1]), bgr=True)
    w.close()
    frames = iio.imread(w.path, plugin="pyav").astype(int)
    assert np.abs(frames - red).max() < 12


def _dark_env(cfg, n):
    env = make_env(cfg.env, cfg.policy, 0, num_envs=n, task_split="test")
    assert enable_frames(env)
    return env


def test_recorded_trials_grid_and_overlays_do_not_change_actions(dark_run, tmp_path):
    cfg, policy, _ = load_agent(dark_run)
    plain = run_episodes(policy, _dark_env(cfg, 2), 2, deterministic=False, seed=3)
    w = VideoWriter(tmp_path / "grid.mp4")
    rec = RolloutRecorder(w, 2, introspect=policy.core.introspect, trial_episodes=2, height=128)
    recorded = run_episodes(policy, _dark_env(cfg, 2), 2, deterministic=False, seed=3, on_step=rec, capture_frames=True)
    rec.close()
    assert recorded == plain
    frames = iio.imread(w.path, plugin="pyav")
    steps = 2 * 20                                          # one trial of two 20-step episodes per tile
    assert frames.shape == (steps, 128, 2 * (128 + 220), 3)  # 2 tiles of [frame 128 | panel 220]


def test_no_overlays_tile_is_the_scaled_frame(dark_run, tmp_path):
    cfg, policy, _ = load_agent(dark_run)
    w = VideoWriter(tmp_path / "plain.mp4")
    rec = RolloutRecorder(w, 1, overlays=False, height=144, trial_episodes=2)
    run_episodes(policy, _dark_env(cfg, 1), 1, on_step=rec, capture_frames=True, max_steps=5)
    rec.close()
    assert iio.imread(w.path, plugin="pyav").shape[:3] == (5, 144, 144)


def test_check_video_path(tmp_path):
    assert check_video_path(tmp_path / "a.mp4") == tmp_path / "a.mp4"
    assert not list(tmp_path.iterdir())                       # the write check leaves nothing behind
    with pytest.raises(ValueError, match="does not exist"):
        check_video_path(tmp_path / "missing" / "a.mp4")
    with pytest.raises(ValueError, match="extension"):
        check_video_path(tmp_path / "a.avi")
    with pytest.raises(ValueError, match="cannot write"):
        check_video_path("/proc/a.mp4")                       # not writable, even for root
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            pytest.skip("root can write to a read-only directory")
        with pytest.raises(ValueError, match="cannot write"):
            check_video_path(ro / "a.mp4")
    finally:
        ro.chmod(0o755)


def test_record_cli_procgen(leaper_run, tmp_path, capsys):
    out = tmp_path / "leaper.mp4"
    assert cli.main(["record", str(leaper_run), "--out", str(out), "--max-steps", "12", "--height", "128",
                     "--start-level", "500", "--num-levels", "5"]) == 0
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape == (12, 128, 128 + 220, 3)
    assert "12 frames" in capsys.readouterr().out


@pytest.mark.parametrize("out", ["missing/v.mp4", "/proc/v.mp4", "v.avi"])
def test_record_bad_path_fails_before_the_rollout(leaper_run, tmp_path, monkeypatch, out, capsys):
    import srwm_rl.eval.rollout as ev

    def boom(*a, **k):
        raise AssertionError("the rollout started")
    monkeypatch.setattr(ev, "run_episodes", boom)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["record", str(leaper_run), "--out", out])
    assert e.value.code == 2 and "video path" in capsys.readouterr().err


@pytest.mark.parametrize("env_id,kw", [("CartPole-v1", {"clip_reward": 0.5}),
                                       ("srwm_rl/DarkRoom-v0", {"trial_episodes": 2, "clip_reward": 0.5})])
def test_overlay_return_is_the_episode_return_of_episodes_csv(tmp_path, monkeypatch, env_id, kw):
    """The overlay adds up the environment's own rewards (not the clipped ones the policy trains on),
    so its return at an episode's last frame is the return `record` writes to episodes.csv."""
    import csv

    from evaluation_helpers import make_run, tiny_config
    from srwm_rl.eval.video import overlay
    run = make_run(tmp_path / "run", tiny_config(env_id, **kw))
    shown: list[float] = []                                # the return on each episode's last frame
    draw = overlay.TileRenderer.draw

    def spy(self, frame, d, history, out=None):
        if d["step"] == 0:
            shown.append(0.0)
        shown[-1] = d["return"]
        return draw(self, frame, d, history, out=out)
    monkeypatch.setattr(overlay.TileRenderer, "draw", spy)
    video = tmp_path / "v.mp4"
    assert cli.main(["record", str(run), "--out", str(video), "--episodes", "2", "--height", "128"]) == 0
    with open(tmp_path / "v.episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    csv_returns = [float(r["return"]) for r in rows]
    assert len(rows) == len(shown) >= 2 and shown == pytest.approx(csv_returns)
    if env_id == "CartPole-v1":                            # raw units: one per step, not the clipped 0.5
        assert csv_returns == [float(r["length"]) for r in rows]


def test_overlay_names_the_action():
    import envs
    from srwm_rl.eval.video.overlay import _action_text
    names = envs.make("srwm_rl/DarkRoom-v0", 1, 0).action_names()
    assert names == ["noop", "up", "down", "left", "right"] and _action_text(np.int64(3), names) == "action left"
    assert _action_text(np.array([1, 0, 2])) == "action 1 0 2" and _action_text(np.array([0.5, -1.0])) == "+0.50 -1.00"
