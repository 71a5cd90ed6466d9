"""Supervised meta-training of a few-shot learner (``srwm-rl train --algo fewshot``).

One update, top to bottom:
  1. Draw ``batch_size`` fresh tasks from the training classes (glyph class ids [0, 2^30)); the batch
     of update u comes from a generator seeded by (seed, u), so a resumed run sees the same tasks.
     With ``distortion_warmup`` the glyph deformations stay 0 for the first half of that fraction of
     training, then grow linearly to ``distortion`` (a curriculum; evaluation always uses the full value).
     With ``shots_warmup`` the number of shots grows in equal stages from 1 to num_shots over that
     fraction of training (a curriculum: short support sets first; with it the SRWM finds in-context
     matching on 5-shot tasks, without it not - BENCHMARKS.md). With ``vary_shots`` the update's
     tasks have K shots, K drawn uniformly from 1..K_max (K_max = num_shots, or the curriculum's
     current stage) by the same generator; evaluation and best.pt keep num_shots.
  2. Run each whole sequence through encoder -> core -> logits from a zero state (memory is reset
     only at the task start); gradients flow through every step, SRWM self-modifications included.
  3. Cross-entropy on every prediction (``loss_on=all``) or on the queries only; Adam, gradient clip.
  4. Every ``eval_every`` updates: held-out accuracy on the VAL glyph classes (which select best.pt)
     and on the real digits; the test classes are left to ``srwm-rl fewshot-eval``.

Steps (``total_steps``, ``global_step``) count examples shown: one update = batch_size x seq_len (of
that update's tasks).
``episode_return`` is the mean number of correct predictions per task (the RL form's return).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from agents.algorithm import Algorithm, with_section
from envs.fewshot.sources import DIGITS_MIN_PER_CLASS, DIGITS_NUM_CLASSES, SOURCES, make_source
from envs.fewshot.tasks import TaskBatch, TaskSpec, sample_tasks, task_inputs, task_spaces
from srwm_rl.eval.fewshot import evaluate_model, shot_accuracy, summarize
from srwm_rl.nn.fewshot import FewshotModel
from srwm_rl.run.agent import config_from_checkpoint
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint
from srwm_rl.run.config import RunConfig
from srwm_rl.run.guards import NonFiniteError, NonFiniteGuard, nonfinite_grads, nonfinite_loss, nonfinite_params
from srwm_rl.run.harness import Run
from srwm_rl.run.optim import adam

EVAL_SEED = 20_220_205          # fixed evaluation tasks, so successive evaluations are comparable


@dataclass(frozen=True)
class FewshotConfig:
    """Sequential N-way K-shot classification (supervised meta-training); steps are examples shown."""

    num_ways: int = 5
    """N: classes per task, labelled 0..N-1 by a fresh random permutation per task (at most 10 with the digits)."""
    num_shots: int = 1
    """K: labelled examples of each class before the queries (>= 1)."""
    num_queries: int = 1
    """Query examples of each class after the K shots (>= 0); their labels are hidden unless query_labels."""
    vary_shots: bool = False
    """Meta-train on tasks of K shots, K drawn per update uniformly from 1..num_shots (1..the shots curriculum's current cap with shots_warmup; evaluation keeps num_shots): the matching learned cannot rely on where the shots fall in the sequence, and the model answers tasks of fewer shots too."""
    query_labels: bool = False
    """Reveal query labels at the next step too (fully sequential protocol); false: every query is exactly K-shot."""
    source: str = "glyphs"
    """Class source for meta-training: glyphs (procedural, unlimited); the real 'digits' are held out for evaluation."""
    distortion: float = 1.0
    """Scale of the per-example glyph deformations (0 = every example of a class is its prototype)."""
    distortion_warmup: float = 0.0
    """Curriculum: fraction of training over which the distortion grows from 0 (held at 0 for its first half, then linear)."""
    shots_warmup: float = 0.0
    """Curriculum: fraction of training over which the shots per class grow from 1 to num_shots in equal stages (0 = none)."""
    loss_on: str = "all"
    """Cross-entropy on every prediction (all) or on the queries only (queries)."""
    batch_size: int = 32
    """Tasks (sequences) per update."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping; 0 = none."""
    encoder: str = "cnn"
    """Image encoder: cnn (two conv layers) or mlp."""
    encoder_features: int = 64
    """Features of one encoded example (fed to the core beside the previous label)."""
    pairing: str = "interleave"
    """How x_{t-1} meets its label y_{t-1}: none (the core pairs them), shift ([x_t, x_{t-1}, y_{t-1}]), interleave (a write step, then a read step)."""
    eval_every: int = 100
    """Updates between held-out evaluations (best.pt follows the val glyph classes' query accuracy)."""
    eval_tasks: int = 256
    """Tasks per held-out evaluation and source."""
    eval_sources: tuple[str, ...] = ("glyphs", "digits")
    """Sources evaluated during training: glyphs (val classes) and/or digits (the real dataset)."""

    def validate(self) -> list[str]:
        errs = []
        if self.num_ways < 2:
            errs.append(f"fewshot.num_ways={self.num_ways}: must be >= 2")
        if self.num_shots < 1:
            errs.append(f"fewshot.num_shots={self.num_shots}: must be >= 1")
        if self.num_queries < 0:
            errs.append(f"fewshot.num_queries={self.num_queries}: must be >= 0")
        if self.source == "digits":
            errs.append("fewshot.source='digits': the real dataset is held out for evaluation only; "
                        "allowed for training: 'glyphs'")
        elif self.source not in SOURCES:
            errs.append(f"fewshot.source={self.source!r}: unknown class source; allowed for training: 'glyphs'")
        unknown = [s for s in self.eval_sources if s not in SOURCES]
        if unknown:
            errs.append(f"fewshot.eval_sources={list(self.eval_sources)}: unknown class source(s) {unknown}; "
                        f"allowed: {list(SOURCES)}")
        if "digits" in self.eval_sources and self.num_ways > DIGITS_NUM_CLASSES:
            errs.append(f"fewshot.num_ways={self.num_ways}: larger than the {DIGITS_NUM_CLASSES} classes of "
                        f"eval source 'digits'; allowed: 2..{DIGITS_NUM_CLASSES} (or drop digits from "
                        f"fewshot.eval_sources)")
        if "digits" in self.eval_sources and self.num_shots + self.num_queries > DIGITS_MIN_PER_CLASS:
            errs.append(f"fewshot.num_shots + fewshot.num_queries = {self.num_shots + self.num_queries}: "
                        f"the digits have only {DIGITS_MIN_PER_CLASS} examples of some class")
        if self.loss_on not in ("all", "queries"):
            errs.append(f"fewshot.loss_on={self.loss_on!r}: must be 'all' or 'queries'")
        if self.loss_on == "queries" and self.num_queries < 1:
            errs.append(f"fewshot.loss_on='queries' needs fewshot.num_queries >= 1 (got {self.num_queries})")
        if not self.distortion >= 0:
            errs.append(f"fewshot.distortion={self.distortion}: must be >= 0")
        for name in ("distortion_warmup", "shots_warmup"):
            if not 0 <= getattr(self, name) <= 1:
                errs.append(f"fewshot.{name}={getattr(self, name)}: must be in [0, 1]")
        for name in ("batch_size", "encoder_features", "eval_tasks"):
            if getattr(self, name) < 1:
                errs.append(f"fewshot.{name}={getattr(self, name)}: must be >= 1")
        if self.eval_every < 0:
            errs.append(f"fewshot.eval_every={self.eval_every}: must be >= 0")
        if not self.learning_rate > 0:
            errs.append(f"fewshot.learning_rate={self.learning_rate}: must be > 0")
        if self.max_grad_norm < 0:
            errs.append(f"fewshot.max_grad_norm={self.max_grad_norm}: must be >= 0")
        if self.encoder not in ("cnn", "mlp"):
            errs.append(f"fewshot.encoder={self.encoder!r}: must be 'cnn' or 'mlp'")
        if self.pairing not in ("none", "shift", "interleave"):
            errs.append(f"fewshot.pairing={self.pairing!r}: must be 'none', 'shift' or 'interleave'")
        return errs


# What a few-shot run's checkpoint needs to be read without the other algorithms' sections.
FewshotRunConfig = with_section("FewshotRunConfig", RunConfig, "fewshot", FewshotConfig)


def task_spec(cfg) -> TaskSpec:
    f = cfg.fewshot
    return TaskSpec(f.num_ways, f.num_shots, f.num_queries, f.query_labels)


def build_model(cfg, device="cpu") -> FewshotModel:
    f = cfg.fewshot
    return FewshotModel(f.num_ways, cfg.core, f.encoder, f.encoder_features, f.pairing).to(device)


def load_fewshot(path: str | Path, device: str | torch.device = "cpu", config_cls: Optional[type] = None):
    """(config, model, checkpoint) of a few-shot run, from a checkpoint file or run directory alone.
    ``config_cls``: the config class to read (default: the run options and the few-shot section)."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = config_from_checkpoint(ckpt, config_cls or FewshotRunConfig)
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

        def mean_where(m: torch.Tensor) -> torch.Tensor:       # nan where m is empty, as .mean() of nothing
            m = m.float()
            return (correct * m).sum() / m.sum()

        values = {"loss": loss, "accuracy": correct.mean(), "episode_return": correct.sum(0).mean(),
                  "acc_shot1": mean_where(shot == 1), "acc_shot2": mean_where(shot == 2)}
        if bool(batch.is_query.any()):                          # decided on the host copy: no device sync
            values["query_accuracy"] = mean_where(is_query)
        stats = dict(zip(values, torch.stack(list(values.values())).tolist()))   # one sync, not one per value
    return loss, stats


def held_out(model: FewshotModel, cfg) -> dict[str, float]:
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


def warmup_scale(progress: float, warmup: float) -> float:
    """Distortion curriculum at ``progress`` (fraction of training done): 0 for the first half of the
    warm-up fraction (exact repeats, where in-context matching is found fastest), then linear up to 1
    at its end."""
    return min(1.0, max(0.0, 2.0 * progress / warmup - 1.0)) if warmup > 0 else 1.0


def shots_cap(progress: float, warmup: float, num_shots: int) -> int:
    """Shots curriculum at ``progress``: K_max grows from 1 to ``num_shots`` in ``num_shots`` equal
    stages over the warm-up fraction, then stays at ``num_shots``."""
    if warmup <= 0 or progress >= warmup:
        return num_shots
    return min(num_shots, 1 + int(num_shots * progress / warmup))


def selection_metric(cfg) -> Optional[str]:
    """The held-out metric best.pt follows: val glyph query accuracy (accuracy without queries)."""
    if "glyphs" not in cfg.fewshot.eval_sources:
        return None
    return "val_glyphs/query_accuracy" if cfg.fewshot.num_queries else "val_glyphs/accuracy"


def train(run: Run) -> dict[str, Any]:
    """Meta-train in a prepared run (see the module docstring)."""
    cfg, f, device = run.cfg, run.cfg.fewshot, run.device
    spec, source = task_spec(cfg), make_source(f.source, f.distortion)
    obs_space, action_space = task_spaces(f.num_ways)
    run.set_threads(obs_space)
    model = build_model(cfg, device)
    optimizer = adam(model.parameters(), lr=f.learning_rate)
    run.track(model, optimizer, obs_space, action_space)
    per_update = f.batch_size * spec.seq_len
    fixed = not (f.vary_shots or f.shots_warmup)        # every update shows per_update examples
    total = math.ceil(cfg.total_steps / per_update) * per_update if fixed else cfg.total_steps
    select = selection_metric(cfg)
    run.start(total=total, unit="ex",
              curve_key=select or "accuracy", show={"loss": "loss", "acc": "accuracy"})
    last: dict[str, float] = {}
    guard = NonFiniteGuard()
    while not run.done:
        update, progress = run.update, run.fraction_done     # the horizon that anneals the rate
        if f.anneal_lr:
            optimizer.param_groups[0]["lr"] = run.annealed(f.learning_rate)
        if f.distortion_warmup:
            source = make_source(f.source, f.distortion * warmup_scale(progress, f.distortion_warmup))
        rng = np.random.default_rng([cfg.seed, update])
        shots = shots_cap(progress, f.shots_warmup, f.num_shots)
        if f.vary_shots:
            shots = int(rng.integers(1, shots + 1))
        batch = sample_tasks(source, replace(spec, num_shots=shots), f.batch_size, "train", rng)
        shown = f.batch_size * batch.labels.shape[0]
        loss, stats = sequence_loss(model, batch, f.loss_on, device)
        optimizer.zero_grad(set_to_none=True)
        bad = nonfinite_loss(loss)
        if bad is None:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), f.max_grad_norm or math.inf)
            bad = None if torch.isfinite(grad_norm) else nonfinite_grads(model) or "the gradient norm"
        if bad is not None:                      # skipped and counted; 3 in a row stop the run
            optimizer.zero_grad(set_to_none=True)
            run.skip_nonfinite(guard, bad, shown, hint="Try a lower --fewshot.learning_rate.")
            continue
        guard.ok()
        optimizer.step()
        bad = nonfinite_params(model)
        if bad is not None:
            raise NonFiniteError(run.failure_message(f"{bad} after the optimiser step",
                                                     "Try a lower --fewshot.learning_rate."))
        last = {**stats, "grad_norm": float(grad_norm), "learning_rate": optimizer.param_groups[0]["lr"]}
        last_update = run.global_step + shown >= cfg.total_steps
        evaluated = bool(f.eval_every and (update + 1) % f.eval_every == 0) or last_update
        if evaluated:
            last.update(held_out(model, cfg))
        run.end_update(shown, score=last.get(select) if evaluated and select else None, metrics=last,
                       force_log=evaluated)
    return run.finish(episode_return=last.get("episode_return", math.nan),
                      accuracy=last.get("accuracy", math.nan), model=model,
                      **{k: v for k, v in last.items() if "/" in k})


# ---- held-out evaluation of a run ------------------------------------------------------------------

def evaluate_run(run_dir: str | Path, sources: Sequence[str] = ("glyphs", "digits"), num_tasks: int = 500,
                 seed: int = 0, checkpoint: str = "best", num_shots: Optional[int] = None,
                 num_queries: Optional[int] = None, device: str = "cpu", split: str = "test") -> dict[str, Any]:
    """Evaluate one few-shot run on held-out classes: glyphs -> the ``split`` class ids (test by default),
    digits -> the real data (evaluated with split 'test' only)."""
    path = Path(run_dir)
    if path.is_dir():
        best = path / "checkpoints" / f"{checkpoint}.pt"
        path = best if best.exists() else path / "checkpoints" / "latest.pt"
    cfg, model, ckpt = load_fewshot(path, device)
    f = cfg.fewshot
    spec = TaskSpec(f.num_ways, num_shots or f.num_shots, f.num_queries if num_queries is None else num_queries,
                    f.query_labels)
    result: dict[str, Any] = {"run_dir": str(run_dir), "checkpoint": str(path), "core": cfg.core.kind, "split": split,
                              "global_step": int(ckpt.get("global_step", 0)), "num_ways": spec.num_ways,
                              "num_shots": spec.num_shots, "num_queries": spec.num_queries, "sources": {}}
    for name in sources:
        if name == "digits" and split != "test":
            continue
        rec = evaluate_model(model, name, spec, split if name == "glyphs" else "test", num_tasks, seed,
                             distortion=f.distortion)
        result["sources"][name] = summarize(rec)
    return result


def _run_dir(cfg) -> str:
    f = cfg.fewshot
    return f"runs/fewshot-{f.num_ways}w{f.num_shots}s-{cfg.core.kind}-s{cfg.seed}"


ALGORITHM = Algorithm(name="fewshot", summary="supervised few-shot meta-training (sequential N-way K-shot)",
                      train=train, section="fewshot", config=FewshotConfig, probe=build_model, load=load_fewshot,
                      evaluate=evaluate_run, run_dir=_run_dir)
