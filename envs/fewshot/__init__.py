"""Sequential N-way K-shot classification: the few-shot learner the SRWM was introduced with.

    sources   procedural glyph classes (meta-training; disjoint train/val/test class ids) and the
              scikit-learn 8x8 digits (held-out evaluation only)
    tasks     the delayed-label protocol: task plans, batches, the per-step input vector
    model     image encoder -> [example, previous label] -> core -> logits
    evaluate  accuracy by shot index with confidence intervals, core comparison plot, ``fewshot-eval``

Training: ``srwm-rl train --algo fewshot`` (agents/fewshot.py). RL form: ``srwm_rl/FewShot*-v0``
(envs/meta/fewshot.py). This package imports no config, so ``srwm_rl.config`` may import it.
"""
from envs.fewshot.sources import SOURCES, DigitsSource, GlyphSource, make_source
from envs.fewshot.tasks import NO_LABEL, TaskBatch, TaskSpec, check_spec, delayed_labels, plan_task, sample_tasks, task_inputs

__all__ = ["NO_LABEL", "SOURCES", "DigitsSource", "GlyphSource", "TaskBatch", "TaskSpec", "check_spec",
           "delayed_labels", "make_source", "plan_task", "sample_tasks", "task_inputs"]
