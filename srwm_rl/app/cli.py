"""The ``srwm-rl`` command: one registry of sub-commands, each parsing its own options (tyro).

    srwm-rl train --preset darkroom --core.kind lstm
    srwm-rl evaluate runs/x --split test
    srwm-rl COMMAND --help

Adding a command: a module under ``srwm_rl/app`` with an options dataclass and ``main(argv, prog)``,
then one line in :data:`COMMANDS`.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class LazyCommand:
    """A sub-command named by its module, imported only when the command runs (``srwm-rl --help``
    then needs no torch): ``options`` (its options dataclass) and ``main(argv, prog)`` are looked up
    in ``srwm_rl.app.<module>`` on first use."""

    name: str
    help: str
    module: str
    options_name: str
    main_name: str

    def _get(self, attr: str) -> Any:
        return getattr(importlib.import_module(f"srwm_rl.app.{self.module}"), attr)

    @property
    def options(self) -> type:
        return self._get(self.options_name)

    @property
    def main(self) -> Callable[[list[str], str], int]:
        return self._get(self.main_name)


COMMANDS: dict[str, LazyCommand] = {c.name: c for c in (
    LazyCommand("train", "train an agent", "train", "TrainArgs", "train_main"),
    LazyCommand("presets", "list the named presets", "train", "PresetsArgs", "presets_main"),
    LazyCommand("demo", "train SRWM-PPO on the default in-context task and show its adaptation curve", "demo",
                "DemoArgs", "demo_main"),
    LazyCommand("evaluate", "evaluate a checkpoint on chosen levels or tasks: per-episode CSV, JSON summary, table",
                "evaluate", "EvaluateArgs", "evaluate_main"),
    LazyCommand("record", "record a rollout video (mp4 or gif, headless) with optional overlays", "evaluate",
                "RecordArgs", "record_main"),
    LazyCommand("adaptation", "return per episode within trials (and bandit regret vs Thompson sampling and UCB1)",
                "compare", "AdaptationArgs", "adaptation_main"),
    LazyCommand("compare", "learning curves of several runs on one plot (mean and spread over seeds)", "compare",
                "CompareArgs", "compare_main"),
    LazyCommand("fewshot-eval", "accuracy by shot index of few-shot runs on held-out classes and real digits, with "
                "95% CIs and a plot comparing the runs", "fewshot", "FewshotEvalArgs", "fewshot_eval_main"),
    LazyCommand("study", "a grid of cores x tasks x seeds at an equal env-step budget, evaluated on held-out tasks, "
                "with a report (resumable, cells in parallel)", "study", "StudyArgs", "study_main"),
)}


def usage(prog: str) -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {prog} COMMAND [OPTIONS]", "", "Self-Referential Weight Matrix agents for RL.", "", "commands:"]
    lines += [f"  {name:{width}s}  {c.help}" for name, c in COMMANDS.items()]
    lines += ["", f"`{prog} COMMAND --help` lists the options of a command."]
    return "\n".join(lines)


def run_command(name: str, argv: list[str], prog: str) -> int:
    """Run one command; a UsageError is printed with the command's name and exits with status 2, a
    TrainingFailure (non-finite values, a failing environment) with status 1."""
    from srwm_rl.app.command import UsageError
    from srwm_rl.run.guards import TrainingFailure

    try:
        return COMMANDS[name].main(argv, prog)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingFailure as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: Optional[list[str]] = None, prog: str = "srwm-rl") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(prog), file=sys.stdout if argv else sys.stderr)
        if argv:
            raise SystemExit(0)
        raise SystemExit(2)
    if argv[0] not in COMMANDS:
        print(f"{usage(prog)}\n\n{prog}: error: unknown command {argv[0]!r}", file=sys.stderr)
        raise SystemExit(2)
    return run_command(argv[0], argv[1:], f"{prog} {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
