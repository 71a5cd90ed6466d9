"""Supervised meta-training of a few-shot learner (``srwm-rl train --algo fewshot``).

One update, top to bottom:
  1. Draw ``batch_size`` fresh tasks from the training classes (glyph class ids [0, 2^30)); the batch
     of update u comes from a generator seeded by (seed, u), so a resumed run sees the same tasks.
     With ``distortion_warmup`` the glyph deformations stay 0 for the first half of that fraction of
     training, then grow linearly to ``distortion`` (a curriculum; evaluation always uses the full value).
  2. Run each whole sequence through encoder -> core -> logits from a zero state (memory is reset
     only at the task start); gradients flow through every step, SRWM self-modifications included.
  3. Cross-entropy on every prediction (``loss_on=all``) or on the queries only; Adam, gradient clip.
  4. Every ``eval_every`` updates: held-out accuracy on the VAL glyph classes (which select best.pt)
     and on the real digits; the test classes are left to ``srwm-rl fewshot-eval``.

Steps (``total_steps``, ``global_step``) count examples shown: one update = batch_size x seq_len.
``episode_return`` is the mean number of correct predictions per task (the RL form's return).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from srwm_rl.run.common import StopSignal, save, seed_everything
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint, rng_state, set_rng_state, space_to_dict
from srwm_rl.run.config import TrainConfig, from_dict, resolve_device, to_dict
from srwm_rl.eval.fewshot import evaluate_model, shot_accuracy, summarize
from srwm_rl.nn.fewshot import FewshotModel
from envs.fewshot.sources import make_source
from envs.fewshot.tasks import TaskBatch, TaskSpec, sample_tasks, task_inputs, task_spaces
from srwm_rl.run.runlog import RunLogger

EVAL_SEED = 20_220_205          # fixed evaluation tasks, so successive evaluations are comparable


def task_spec(cfg: TrainConfig) -> TaskSpec:
    f = cfg.fewshot
    return TaskSpec(f.num_ways, f.num_shots, f.num_queries, f.query_labels)


def build_model(cfg: TrainConfig, device="cpu") -> FewshotModel:
    return FewshotModel.from_config(cfg.fewshot, cfg.core).to(device)


def probe_model(cfg: TrainConfig) -> None:
    """Build the model once (no data) so bad core options fail before the run directory is made."""
    from srwm_rl.app.cli import UsageError
    try:
        build_model(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None


def load_fewshot(path: str | Path, device: str | torch.device = "cpu") -> tuple[TrainConfig, FewshotModel, dict]:
    """Rebuild a few-shot model from a checkpoint file or run directory alone."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = from_dict(TrainConfig, ckpt["config"])
        if cfg.algo != "fewshot":
            raise ValueError(f"it was trained with algo={cfg.algo!r}, not 'fewshot'")
        model = build_model(cfg, device)
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is not a usable few-shot checkpoint: {e}") from None
    return cfg, model, ckpt


def sequence_loss(model: FewshotModel, batch: TaskBatch, loss_on: str, device) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over the chosen predictions of a batch, and accuracy statistics."""
    x = task_inputs(batch.images, batch.prev_labels, model.num_ways).to(device)
    labels, is_query = batch.labels.to(device), batch.is_query.to(device)
    logits, _ = model(x)
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    mask = is_query if loss_on == "queries" else torch.ones_like(is_query)
    loss = (ce * mask).sum() / mask.sum()
    with torch.no_grad():
        correct = (logits.argmax(-1) == labels).float()
        shot = batch.shot.to(device)
        stats = {"loss": float(loss), "accuracy": float(correct.mean()),
                 "episode_return": float(correct.sum(0).mean()),
                 "acc_shot1": float(correct[shot == 1].mean()),
                 "acc_shot2": float(correct[shot == 2].mean()) if (shot == 2).any() else float("nan")}
        if is_query.any():
            stats["query_accuracy"] = float(correct[is_query].mean())
    return loss, stats


def held_out(model: FewshotModel, cfg: TrainConfig) -> dict[str, float]:
    """Accuracy on the val glyph classes and on the digits (fixed tasks), as flat metrics."""
    f, spec, out = cfg.fewshot, task_spec(cfg), {}
    for name in f.eval_sources:
        split, key = ("val", "val_glyphs") if name == "glyphs" else ("test", name)
        s = summarize(evaluate_model(model, name, spec, split, f.eval_tasks, EVAL_SEED, distortion=f.distortion))
        out[f"{key}/accuracy"] = s["accuracy"]
        out[f"{key}/acc_shot2"] = shot_accuracy(s, 2)
        if "query_accuracy" in s:
            out[f"{key}/query_accuracy"] = s["query_accuracy"]
    return out


def warmup_scale(update: int, warmup_updates: float) -> float:
    """Distortion curriculum: 0 for the first half of the warm-up (exact repeats, where in-context
    matching is found fastest), then linear up to 1 at its end."""
    return min(1.0, max(0.0, 2.0 * update / warmup_updates - 1.0)) if warmup_updates > 0 else 1.0


def selection_metric(cfg: TrainConfig) -> Optional[str]:
    """The held-out metric best.pt follows: val glyph query accuracy (accuracy without queries)."""
    if "glyphs" not in cfg.fewshot.eval_sources:
        return None
    return "val_glyphs/query_accuracy" if cfg.fewshot.num_queries else "val_glyphs/accuracy"


def train(cfg: TrainConfig, run_dir: Path, resume: Optional[dict[str, Any]] = None,
          progress: bool = True) -> dict[str, Any]:
    """Meta-train ``cfg`` into ``run_dir`` (continuing from the checkpoint dict ``resume`` if given)."""
    f, device = cfg.fewshot, resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    spec, source = task_spec(cfg), make_source(f.source, f.distortion)
    model = build_model(cfg, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=f.learning_rate)
    per_update = f.batch_size * spec.seq_len
    num_updates = math.ceil(cfg.total_steps / per_update)
    start_update, global_step, best = 0, 0, -math.inf
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        set_rng_state(resume["rng"])
        start_update, global_step = resume["update"], resume["global_step"]
        best = resume.get("best_return", -math.inf)
    obs_space, action_space = task_spaces(f.num_ways)
    select = selection_metric(cfg)
    logger = RunLogger(run_dir, curve_key=select or "accuracy")
    bar = tqdm(total=num_updates * per_update, initial=global_step, disable=not progress, unit="ex",
               dynamic_ncols=True, smoothing=0.1)

    def payload(u: int) -> dict[str, Any]:
        return {"config": to_dict(cfg), "obs_space": space_to_dict(obs_space),
                "action_space": space_to_dict(action_space), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "normalizers": [], "global_step": global_step,
                "update": u, "rng": rng_state(), "best_return": best}

    interrupted, update, last = None, start_update, {}
    t_start, steps_start = time.time(), global_step
    with StopSignal() as stop:
        for update in range(start_update, num_updates):
            if stop:
                interrupted = stop.received
                break
            if f.anneal_lr:
                optimizer.param_groups[0]["lr"] = f.learning_rate * (1.0 - update / num_updates)
            if f.distortion_warmup:
                source = make_source(f.source, f.distortion * warmup_scale(update, f.distortion_warmup * num_updates))
            batch = sample_tasks(source, spec, f.batch_size, "train", np.random.default_rng([cfg.seed, update]))
            loss, stats = sequence_loss(model, batch, f.loss_on, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), f.max_grad_norm or math.inf)
            optimizer.step()
            global_step += per_update
            bar.update(per_update)
            metrics = {**stats, "grad_norm": float(grad_norm), "learning_rate": optimizer.param_groups[0]["lr"]}
            done = update + 1 == num_updates
            if (f.eval_every and (update + 1) % f.eval_every == 0) or done:
                metrics.update(held_out(model, cfg))
                if select is not None and metrics[select] > best:
                    best = metrics[select]
                    save(run_dir, "best", payload(update + 1))
            if (update + 1) % cfg.log_every == 0 or done or len(metrics) > len(stats) + 2:
                metrics["sps"] = (global_step - steps_start) / max(time.time() - t_start, 1e-9)
                logger.log(global_step, metrics)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.3f}")
            last = metrics
            if (update + 1) % cfg.checkpoint_every == 0:
                save(run_dir, "latest", payload(update + 1))
    done_updates = update if interrupted is not None else num_updates
    save(run_dir, "latest", payload(done_updates))
    if select is None:                      # no held-out selection: best = latest
        save(run_dir, "best", payload(done_updates))
    bar.close()
    logger.close()
    return {"global_step": global_step, "episode_return": last.get("episode_return", float("nan")),
            "accuracy": last.get("accuracy", float("nan")), "best_return": best, "interrupted": interrupted,
            "model": model, **{k: v for k, v in last.items() if "/" in k}}
