"""Evaluation: rollouts with fixed per-environment quotas (rollout), statistics (stats, scipy), Procgen's
normalised score (procgen_scores), evaluating a checkpoint (evaluate), bandit baselines and learning
curves (analysis), headless video (video/), and the few-shot learner's held-out accuracy (fewshot)."""
