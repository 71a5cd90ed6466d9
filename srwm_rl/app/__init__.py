"""The ``srwm-rl`` command (cli) and its sub-commands: train and presets (train), evaluate and record
(evaluate), adaptation and compare (compare), fewshot-eval (fewshot), demo (demo). The top floor: the
only place that knows every algorithm."""
