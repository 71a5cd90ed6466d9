"""Rollout videos, headless: frames -> mp4 (PyAV, libx264) or gif, with optional overlays.

    writer = VideoWriter("out.mp4", fps=15)          # checks the path now, before any rollout
    rec = RolloutRecorder(writer, num_envs=4, introspect=policy.core.introspect)
    run_episodes(policy, env, 4, on_step=rec, capture_frames=True)
    rec.close()

    writer     the file (mp4 through PyAV, gif through Pillow)
    overlay    one tile: the frame and a side panel (step, reward, return, action probabilities, |Delta W|)
    recorder   the rollout hook: copies each step's arrays, draws and encodes on a background thread
"""
from srwm_rl.eval.video.overlay import TileRenderer, upscale
from srwm_rl.eval.video.recorder import RolloutRecorder, enable_frames
from srwm_rl.eval.video.writer import FORMATS, VideoWriter, check_video_path

__all__ = ["FORMATS", "RolloutRecorder", "TileRenderer", "VideoWriter", "check_video_path", "enable_frames", "upscale"]
