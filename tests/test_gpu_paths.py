"""Every training and evaluation path with --device cuda: IMPALA's learner (actors on the CPU), PPO,
evaluation, and few-shot meta-training with its held-out evaluation.

Marked ``gpu`` and skipped without a CUDA device (``make test`` excludes the marker; run them with
``pytest -m gpu``, as benchmarks/gpu_check.sh does). Each test is a tiny end-to-end run through the
command line, then checks that the checkpoint is finite and was trained on the device it names.
``check_*`` take the device so the same code can be tried on the CPU.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srwm_rl.app.cli import main

CLI = str(Path(sys.executable).parent / "srwm-rl")
CORE = ["--core.hidden_size", "16", "--core.num_heads", "2", "--core.num_layers", "1"]

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def finite_checkpoint(run: Path, device: str) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["device"] == device
    ckpt = torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
    state = next(v for k, v in ckpt.items() if isinstance(v, dict) and k in ("policy", "model"))
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    return ckpt


def check_impala(tmp_path: Path, device: str) -> None:
    """The learner on ``device`` (spawned CPU actors, pinned-memory unrolls), the core impl 'auto'."""
    run = tmp_path / "impala"
    cmd = [CLI, "train", "--algo", "impala", "--env.id", "srwm_rl/CartPoleNoVel-v0", "--no-policy.prev_action",
           "--policy.mlp_hidden", "16", *CORE, "--impala.num_actors", "2", "--impala.envs_per_actor", "2",
           "--impala.batch_size", "4", "--impala.unroll_length", "8", "--total_steps", "256", "--device", device,
           "--torch_threads", "1", "--no-progress", "--run_dir", str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert finite_checkpoint(run, device)["global_step"] >= 256


def check_ppo_and_evaluate(tmp_path: Path, device: str) -> None:
    run = tmp_path / "ppo"
    assert main(["train", "--preset", "tmaze", "--total_steps", "256", "--env.num_envs", "4", "--ppo.num_steps", "16",
                 "--ppo.num_minibatches", "2", "--ppo.update_epochs", "1", *CORE, "--device", device,
                 "--no-progress", "--run_dir", str(run)]) == 0
    finite_checkpoint(run, device)
    out = tmp_path / "ev"
    assert main(["evaluate", str(run), "--num-episodes", "4", "--device", device, "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())


def check_fewshot(tmp_path: Path, device: str) -> None:
    run = tmp_path / "fewshot"
    assert main(["train", "--algo", "fewshot", *CORE, "--fewshot.batch_size", "4", "--fewshot.eval_tasks", "8",
                 "--fewshot.eval_every", "2", "--fewshot.encoder_features", "16", "--fewshot.eval_sources", "glyphs",
                 "--total_steps", "160", "--device", device, "--no-progress", "--run_dir", str(run)]) == 0
    finite_checkpoint(run, device)
    out = tmp_path / "ev"
    assert main(["evaluate", str(run), "--num-episodes", "8", "--device", device, "--out", str(out)]) == 0
    assert (out / "fewshot_eval.json").exists()


def test_impala_learner_on_cuda(tmp_path):
    check_impala(tmp_path, "cuda")


def test_ppo_and_evaluation_on_cuda(tmp_path):
    check_ppo_and_evaluate(tmp_path, "cuda")


def test_fewshot_on_cuda(tmp_path):
    check_fewshot(tmp_path, "cuda")


def test_srwm_core_auto_on_cuda_matches_cpu():
    """The core with impl 'auto' (triton when installed, else lean) on the GPU equals the CPU path."""
    from srwm_rl.nn.cores import CoreConfig, make_core
    torch.manual_seed(0)
    core = make_core(8, CoreConfig(hidden_size=32, num_heads=2, num_layers=2, impl="auto"))
    x = torch.randn(12, 3, 8)
    first = torch.zeros(12, 3, dtype=torch.bool)
    first[5, 1] = True
    out_cpu, s_cpu = core(x, core.initial_state(3), first)
    core_gpu = core.to("cuda")
    out_gpu, s_gpu = core_gpu(x.cuda(), core_gpu.initial_state(3), first.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-4, rtol=1e-4)
    for a, b in zip(s_gpu, s_cpu):
        torch.testing.assert_close(a.cpu(), b, atol=1e-4, rtol=1e-4)
