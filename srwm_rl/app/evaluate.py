"""``srwm-rl evaluate`` and ``srwm-rl record``: a checkpoint on chosen levels or tasks, as numbers or video.

Every bad input (missing run directory, corrupt or foreign checkpoint, unknown game, negative level
range, unwritable video path) is a UsageError (exit status 2) raised before any rollout starts. What
"evaluate" means for a run is its algorithm's (``agents.registry``): rollouts of the policy, or a
supervised learner's own held-out evaluation.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import tyro

from agents.registry import ALGORITHMS, TrainConfig
from srwm_rl.app.command import OWN_DEFAULT, UsageError, check_counts, parse, run_dir_of
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint

Flag = Annotated[bool, tyro.conf.FlagCreatePairsOff]
Target = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR_OR_CHECKPOINT")]


@dataclass(frozen=True)
class Levels:
    """Which levels or tasks (default: the held-out ones)."""

    split: Annotated[Optional[Literal["train", "test"]], OWN_DEFAULT] = None
    """In-context tasks: the task set; Procgen: train = the training levels, test = the 200 levels starting at 1000 (the paper's first unseen block). Default: test. Other Gymnasium environments have no splits: they refuse it."""
    games: Annotated[tuple[str, ...], OWN_DEFAULT] = ()
    """Procgen games (default: those trained on)."""
    start_level: Annotated[Optional[int], OWN_DEFAULT] = None
    """Procgen: first level seed (default: as the split says)."""
    num_levels: Annotated[Optional[int], OWN_DEFAULT] = None
    """Procgen: number of levels, 0 = the full distribution (default: as the split says)."""
    distribution_mode: Annotated[Optional[str], OWN_DEFAULT] = None
    """Procgen: easy, hard, memory, ... (default: as trained)."""
    trial_episodes: Annotated[Optional[int], OWN_DEFAULT] = None
    """Episodes per trial with memory kept across them (default: as trained; 0 = no trials)."""


@dataclass(frozen=True)
class Rollout:
    """How the rollouts run."""

    num_envs: Annotated[Optional[int], OWN_DEFAULT] = None
    """Environments stepped together (default: min(episodes, 64))."""
    seed: int = 0
    """Seed of the environments and of action sampling."""
    device: str = "cpu"
    """cpu or cuda."""
    threads: int = 0
    """torch.set_num_threads (0 = PyTorch's default; 1 is fastest for small models on a busy CPU)."""


Omit = tyro.conf.OmitArgPrefixes


# ---- loading and evaluating, shared with the adaptation command ----------------------------------------

def algorithm_of(target: str):
    """The algorithm record of the run a checkpoint or run directory belongs to; UsageError otherwise."""
    if not Path(target).exists():
        raise UsageError(f"{target} does not exist (expected a run directory or a checkpoint file)")
    try:
        algo = load_checkpoint(target)["config"].get("algo", "ppo")
    except (CheckpointError, AttributeError) as e:
        raise UsageError(str(e)) from None
    if algo not in ALGORITHMS:
        raise UsageError(f"{target} was trained with algo={algo!r}, which this version does not know")
    return ALGORITHMS[algo]


def load(target: str, device: str, threads: int = 0):
    """The :class:`srwm_rl.run.agent.Agent` of an actor-critic run, or UsageError naming the problem."""
    import torch
    if threads < 0:
        raise UsageError(f"--threads={threads}: must be >= 0")
    if threads:
        torch.set_num_threads(threads)
    algorithm = algorithm_of(target)
    if algorithm.load is None or algorithm.evaluate is not None:
        what = "its policy is another library's" if algorithm.load is None else "it is not an RL policy"
        raise UsageError(f"{target} was trained with --algo {algorithm.name}: {what}, so it cannot be rolled out "
                         f"here" + (" (use `srwm-rl evaluate` or `fewshot-eval`)" if algorithm.evaluate else ""))
    try:
        return algorithm.load(target, device, TrainConfig)
    except (CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None


def split_of(levels: Levels, cfg) -> str:
    """The split to evaluate: --split, or test by default; UsageError if the environment has no splits."""
    import envs
    if levels.split is not None and not envs.family_of(cfg.env.id).has_splits:
        raise UsageError(f"--split {levels.split}: {cfg.env.id} has no task or level splits (they are a property of "
                         f"the in-context tasks srwm_rl/... and of Procgen); evaluate it without --split")
    return levels.split or "test"


def run_evaluation(target: str, agent, levels: Levels, rollout: Rollout, num_episodes: int, greedy: bool, **kw):
    """:func:`srwm_rl.eval.evaluate.evaluate` with the command's options; warnings printed, bad options
    a UsageError."""
    from srwm_rl.eval.evaluate import evaluate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = evaluate(target, agent=agent, split=split_of(levels, agent.config), games=levels.games or None,
                              start_level=levels.start_level, num_levels=levels.num_levels,
                              distribution_mode=levels.distribution_mode, num_episodes=num_episodes,
                              trial_episodes=kw.pop("trial_episodes", levels.trial_episodes),
                              deterministic=greedy, num_envs=rollout.num_envs, seed=rollout.seed,
                              device=rollout.device, progress=kw.pop("progress", True), **kw)
        except (ValueError, ImportError) as e:
            raise UsageError(str(e)) from None
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}")
    return result


def fmt(x: Any, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def tag(levels: Levels, rollout: Rollout) -> str:
    if levels.start_level is not None or levels.num_levels is not None:
        num = levels.num_levels if levels.num_levels is not None else "x"
        return f"levels{levels.start_level or 0}+{num}-s{rollout.seed}"
    return f"{levels.split or 'test'}-s{rollout.seed}"


# ---- evaluate ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluateArgs:
    """Evaluate a checkpoint on chosen levels or tasks: per-episode CSV, JSON summary, table."""

    target: Target
    """A run directory or a checkpoint file."""
    num_episodes: int = 200
    """Episodes per game (trials, with --trial-episodes); a few-shot run: tasks per class source."""
    out: Annotated[Optional[str], OWN_DEFAULT] = None
    """Output directory (default: RUN_DIR/eval/<split>-s<seed>)."""
    sample: Annotated[Flag, OWN_DEFAULT] = False
    """Sample actions (default: greedy, as in the paper)."""
    levels: Annotated[Levels, Omit] = field(default_factory=Levels)
    rollout: Annotated[Rollout, Omit] = field(default_factory=Rollout)


def evaluate_main(argv: list[str], prog: str) -> int:
    from srwm_rl.eval.evaluate import json_safe, write_episodes_csv
    from srwm_rl.run.runlog import write_json
    args = parse(EvaluateArgs, argv, prog)
    check_counts(num_episodes=args.num_episodes, num_envs=args.rollout.num_envs)
    algorithm = algorithm_of(args.target)
    if algorithm.evaluate is not None:                # a supervised learner: its own held-out evaluation
        from srwm_rl.app.fewshot import evaluate_supervised
        return evaluate_supervised(algorithm, args)
    agent = load(args.target, args.rollout.device, args.rollout.threads)
    out = Path(args.out) if args.out else run_dir_of(args.target) / "eval" / tag(args.levels, args.rollout)
    records, summary = run_evaluation(args.target, agent, args.levels, args.rollout, args.num_episodes,
                                      greedy=not args.sample)
    out.mkdir(parents=True, exist_ok=True)
    write_episodes_csv(out / "episodes.csv", records)
    write_json(out / "summary.json", json_safe(summary))
    print_summary(summary)
    print(f"episodes: {out / 'episodes.csv'}\nsummary : {out / 'summary.json'}")
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    lv = summary["levels"]
    where = (f"levels [{lv['start_level']}, {lv['start_level'] + lv['num_levels']})" if lv.get("num_levels")
             else "all levels" if "num_levels" in lv else f"task split {lv['task_split']}" if lv.get("task_split")
             else "its one distribution (no task or level splits)")
    print(f"{summary['checkpoint']}  ({summary['core']}, {summary['global_step']:,} steps)  on {where}, "
          f"{'greedy' if summary['deterministic'] else 'sampled'} actions"
          + (f", trials of {summary['trial_episodes']} episodes" if summary["trial_episodes"] else ""))
    rows = list(summary["per_game"].items())
    if len(rows) > 1:
        rows.append(("all", {**summary["return"], "success": summary["success"],
                             "normalized": summary["normalized_score"]}))
    width = max(28, *(len(game) for game, _ in rows))          # long env ids keep the columns aligned
    print(f"{'game':{width}s} {'episodes':>8} {'mean':>9} {'std':>8} {'95% CI':>19} {'success':>8} {'normalised':>10}"
          f"   (return per episode, the environment's own units)")
    for game, g in rows:
        ci = f"[{fmt(g['ci95'][0])}, {fmt(g['ci95'][1])}]"
        print(f"{game:{width}s} {g['n']:>8} {fmt(g['mean']):>9} {fmt(g['std']):>8} {ci:>19} "
              f"{fmt(g['success']):>8} {fmt(g['normalized'], 3):>10}")
    if summary.get("adaptation"):
        print("per episode within the trial: " + "  ".join(
            f"{r['episode_in_trial'] + 1}: {fmt(r['mean'])}" for r in summary["adaptation"]))


# ---- record ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordArgs:
    """Record a rollout video (mp4 or gif, headless) with optional overlays."""

    target: Target
    """A run directory or a checkpoint file."""
    out: Annotated[Optional[str], OWN_DEFAULT] = None
    """Video file, .mp4 or .gif (default: RUN_DIR/videos/<split>-s<seed>.mp4)."""
    gif: Flag = False
    """Write a gif (when --out is not given)."""
    grid: int = 1
    """Episodes shown side by side (one environment each)."""
    episodes: int = 1
    """Episodes (trials) played one after another per tile."""
    no_overlays: Flag = False
    """The game frames only."""
    fps: float = 15.0
    """Frames per second."""
    height: int = 256
    """Height of one tile in pixels."""
    max_steps: Optional[int] = None
    """Stop after this many steps."""
    sample: Annotated[Flag, OWN_DEFAULT] = False
    """Sample actions (default: greedy, as in the paper)."""
    overwrite: Annotated[Flag, OWN_DEFAULT] = False
    """Replace the video file if it exists (default: refuse)."""
    levels: Annotated[Levels, Omit] = field(default_factory=Levels)
    rollout: Annotated[Rollout, Omit] = field(default_factory=Rollout)


def record_main(argv: list[str], prog: str) -> int:
    from srwm_rl.eval.evaluate import eval_env_overrides, progress_bar, write_episodes_csv
    from srwm_rl.eval.rollout import run_episodes
    from srwm_rl.eval.video import RolloutRecorder, VideoWriter, enable_frames
    from srwm_rl.run.environment import load_normalizer_state, make_env
    args = parse(RecordArgs, argv, prog)
    lv = args.levels
    check_counts(grid=args.grid, episodes=args.episodes, height=args.height, max_steps=args.max_steps)
    if not args.no_overlays and args.height < 128:
        raise UsageError(f"--height={args.height}: tiles with overlays need >= 128 pixels")
    agent = load(args.target, args.rollout.device, args.rollout.threads)
    cfg, policy, ckpt = agent.config, agent.policy, agent.checkpoint
    if args.out:
        path = Path(args.out)
    else:
        path = run_dir_of(args.target) / "videos" / f"{tag(lv, args.rollout)}.{'gif' if args.gif else 'mp4'}"
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not args.overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it, or choose another --out")
    try:
        writer = VideoWriter(path, fps=args.fps)        # the path is checked here, before any rollout
        per_game, _ = eval_env_overrides(cfg, split_of(lv, cfg), lv.games or None, lv.start_level, lv.num_levels,
                                         lv.distribution_mode, lv.trial_episodes)
    except (ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    if len(per_game) > 1:
        raise UsageError(f"record one game at a time; pass --games with one of {[o['id'] for o in per_game]}")
    env = make_env(cfg.env, cfg.policy, args.rollout.seed, num_envs=args.grid, **per_game[0])
    try:
        load_normalizer_state(env, ckpt.get("normalizers", []), update=False)
        enable_frames(env)
        trials = int(getattr(env, "trial_episodes", 0) or 0)
        rec = RolloutRecorder(writer, args.grid, overlays=not args.no_overlays, height=args.height,
                              introspect=policy.core.introspect, trial_episodes=trials,
                              action_names=env.action_names())
        bar = progress_bar(args.grid * args.episodes, "trial" if trials else "episode")
        records = run_episodes(policy, env, args.grid * args.episodes, deterministic=not args.sample,
                               seed=args.rollout.seed, on_step=rec, capture_frames=True, max_steps=args.max_steps,
                               env_name=per_game[0].get("id", cfg.env.id), on_progress=lambda n: bar.update(n - bar.n))
        bar.close()
        out = rec.close()
    finally:
        env.close()
    csv_path = write_episodes_csv(path.with_suffix(".episodes.csv"), records)
    h, w = writer.shape
    print(f"video: {out}  ({writer.frames} frames, {w}x{h}, {args.fps:g} fps, "
          f"{'greedy' if not args.sample else 'sampled'} actions)\nepisodes: {csv_path}  (returns in the "
          f"environment's own reward units, as the overlay shows them)")
    for r in records:
        print(f"  tile {r.env_index}: {r.game} seed {r.seed} trial {r.trial} episode {r.episode_in_trial + 1}: "
              f"return {r.ret:.2f}, length {r.length}")
    return 0
