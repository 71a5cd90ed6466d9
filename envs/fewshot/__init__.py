"""The data of sequential N-way K-shot classification, the task the SRWM was introduced with.

    sources   procedural glyph classes (meta-training; disjoint train/val/test class ids) and the
              scikit-learn 8x8 digits (held-out evaluation only)
    tasks     the delayed-label protocol: task plans, batches, the per-step input vector

The RL form is ``srwm_rl/FewShot*-v0`` (envs/meta/fewshot.py); the supervised learner that reads the
same input vectors is ``srwm-rl train --algo fewshot`` (agents/fewshot.py, srwm_rl/nn/fewshot.py).
"""
from envs.fewshot.sources import SOURCES, DigitsSource, GlyphSource, make_source
from envs.fewshot.tasks import NO_LABEL, TaskBatch, TaskSpec, check_spec, delayed_labels, plan_task, sample_tasks, task_inputs

__all__ = ["NO_LABEL", "SOURCES", "DigitsSource", "GlyphSource", "TaskBatch", "TaskSpec", "check_spec",
           "delayed_labels", "make_source", "plan_task", "sample_tasks", "task_inputs"]
