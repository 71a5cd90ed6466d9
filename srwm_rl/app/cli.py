"""The ``srwm-rl`` command: one registry of sub-commands, each parsing its own options (tyro).

    srwm-rl train --preset darkroom --core.kind lstm
    srwm-rl evaluate runs/x --split test
    srwm-rl COMMAND --help

Adding a command: a module under ``srwm_rl/app`` with an options dataclass and ``main(argv, prog)``,
then one line in :data:`COMMANDS`.
"""
from __future__ import annotations

import sys
from typing import Optional

from srwm_rl.app import compare, demo, evaluate, fewshot, study, train
from srwm_rl.app.command import Command, UsageError
from srwm_rl.run.guards import TrainingFailure

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("train", "train an agent", train.TrainArgs, train.train_main),
    Command("presets", "list the named presets", train.PresetsArgs, train.presets_main),
    Command("demo", "train SRWM-PPO on the default in-context task and show its adaptation curve", demo.DemoArgs,
            demo.demo_main),
    Command("evaluate", "evaluate a checkpoint on chosen levels or tasks: per-episode CSV, JSON summary, table",
            evaluate.EvaluateArgs, evaluate.evaluate_main),
    Command("record", "record a rollout video (mp4 or gif, headless) with optional overlays", evaluate.RecordArgs,
            evaluate.record_main),
    Command("adaptation", "return per episode within trials (and bandit regret vs Thompson sampling and UCB1)",
            compare.AdaptationArgs, compare.adaptation_main),
    Command("compare", "learning curves of several runs on one plot (mean and spread over seeds)",
            compare.CompareArgs, compare.compare_main),
    Command("study", "a grid of cores x tasks x seeds at an equal env-step budget, evaluated on held-out tasks, "
            "with a report (resumable, cells in parallel)", study.StudyArgs, study.study_main),
    Command("fewshot-eval", "accuracy by shot index of few-shot runs on held-out classes and real digits, with "
            "95% CIs and a plot comparing the runs", fewshot.FewshotEvalArgs, fewshot.fewshot_eval_main),
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
