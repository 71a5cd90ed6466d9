"""Where does a trained Dark Room agent search? Cell visits per episode of the trial, train vs held-out goals.

    .venv/bin/python benchmarks/darkroom_search.py runs/demo                 # the `make demo` run
    .venv/bin/python benchmarks/darkroom_search.py RUN_DIR --trials 512 --greedy
    .venv/bin/python benchmarks/darkroom_search.py CONTROL_RUN --split '{"test_fraction": 0.2}'

Rolls the agent out on training goals and on held-out goals (``task_split`` test), with the same
number of trials, and counts the cells it acts from in each episode of the trial on the training goals
(``srwm_rl.eval.search``). Reported per episode: the return on either goal set, and the share of steps
spent per training-goal cell and per held-out-goal cell, against the uniform 1 / size^2. A searcher
whose first episode never stands on a held-out cell cannot score there before it has exhausted the
cells it was rewarded in: the held-out curve then measures the training prior, not the adaptation.
``--split`` scores the agent on another partition of the goals (env kwargs over the run's own): the
control trained with ``test_fraction`` 0 (every goal rewarded in training) is scored on the default
partition's 16 "held-out" and 65 "training" cells, which separates the cells' geometry from the prior
a split teaches. A second table splits the last episode into finding the goal (the share of trials
that reached it before the last episode) and coming back to it (of those, the share that reach it again
in the last, and their return): a held-out gap is either a search that did not get there in time or a
return that does not carry to cells never rewarded in training. The mean distance of either goal set
from the start is printed and saved too: a split whose held-out cells lie nearer the start scores higher
there for that reason alone. Writes ``darkroom_search.json`` in the run directory (or ``--out``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.meta.darkroom import DarkRoom  # noqa: E402
from srwm_rl.eval.rollout import run_episodes  # noqa: E402
from srwm_rl.eval.search import cell_visits, find_and_return, goal_cell_shares  # noqa: E402
from srwm_rl.eval.stats import adaptation_curve  # noqa: E402
from srwm_rl.run.agent import load_agent  # noqa: E402
from srwm_rl.run.environment import make_env  # noqa: E402


def mean_steps_from_start(goal_ids, size: int, start) -> float:
    """Mean fewest moves from ``start`` ([row, col]) to the goal cells ``goal_ids`` (row-major ids)."""
    row, col = (int(x) for x in start)
    return float(sum(abs(int(g) // size - row) + abs(int(g) % size - col) for g in goal_ids) / len(goal_ids))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--trials", type=int, default=256, help="trials per goal set")
    p.add_argument("--greedy", action="store_true", help="most likely actions (default: sampled, as in training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: the run directory)")
    p.add_argument("--split", default=None, metavar="JSON",
                   help="env kwargs that define the goal partition to score on, over the run's own "
                        "(e.g. '{\"test_fraction\": 0.2, \"split_seed\": 0}')")
    args = p.parse_args()
    agent = load_agent(args.run_dir)
    cfg = agent.config
    if cfg.env.id != "srwm_rl/DarkRoom-v0" or cfg.env.normalize_obs or (cfg.env.trial_episodes or 0) < 2:
        print(f"{args.run_dir}: needs a srwm_rl/DarkRoom-v0 run in trials of >= 2 episodes without env.normalize_obs "
              f"(got env.id={cfg.env.id!r}, normalize_obs={cfg.env.normalize_obs}, "
              f"trial_episodes={cfg.env.trial_episodes})", file=sys.stderr)
        return 2
    try:
        split = json.loads(args.split) if args.split else {}
        if not isinstance(split, dict):
            raise ValueError(f"got a {type(split).__name__}")
    except ValueError as e:
        print(f"--split={args.split!r} is not valid: {e}; expected a JSON object of env kwargs", file=sys.stderr)
        return 2
    kwargs = {**cfg.env.kwargs, **split}
    try:
        room = DarkRoom(**kwargs, task_split="test")
    except (ValueError, TypeError) as e:
        print(f"{args.run_dir}: no held-out goals to score on ({e}); give a partition with --split", file=sys.stderr)
        return 2
    env_cfg = dataclasses.replace(cfg.env, kwargs=kwargs)
    size, train_ids, test_ids = room.size, room.task_ids("train"), room.task_ids("test")

    def returns(records) -> list[float]:
        return [row["mean"] for row in adaptation_curve(records)]

    # One rollout on the training goals gives both their returns and the visits.
    visits, train_records = cell_visits(agent.policy, make_env(env_cfg, cfg.policy, args.seed, 32, task_split="train"),
                                        args.trials, size, seed=args.seed, greedy=args.greedy)
    test_env = make_env(env_cfg, cfg.policy, args.seed, 32, task_split="test")
    test_records = run_episodes(agent.policy, test_env, args.trials, deterministic=args.greedy, seed=args.seed)
    ret_train, ret_test = returns(train_records), returns(test_records)
    found = {"training": find_and_return(train_records), "held_out": find_and_return(test_records)}
    start = room.reset(seed=args.seed)[0]          # the room's own start cell (its first observation)
    distance = {name: mean_steps_from_start(ids, size, start) for name, ids in (("training", train_ids),
                                                                                ("held_out", test_ids))}
    out: dict = {"run_dir": args.run_dir, "env_kwargs": kwargs, "size": size, "trials": args.trials, "greedy": args.greedy,
                 "held_out_cells": [list(divmod(int(t), size)) for t in test_ids], "steps_from_start": distance,
                 "episodes": []}
    print(f"{args.run_dir}: {size}x{size}, {len(train_ids)} training goals, {len(test_ids)} held out; "
          f"{args.trials} trials per goal set, {'greedy' if args.greedy else 'sampled'} actions")
    print(f"(mean steps from the start to the goal: training {distance['training']:.2f}, held-out "
          f"{distance['held_out']:.2f} - nearer goals are found sooner, so compare the sets with this in mind)")
    if args.split:
        print(f"(goal sets of the partition {json.dumps(kwargs)}; the agent trained on {json.dumps(cfg.env.kwargs)})")
    print("| episode | return, training goals | return, held-out goals | steps per training-goal cell "
          "| steps per held-out cell | steps on held-out cells (count) |")
    print("|---|---|---|---|---|---|")
    for k in range(cfg.env.trial_episodes):
        share = goal_cell_shares(visits[k], train_ids, test_ids)
        count = int(visits[k].reshape(-1)[test_ids].sum())
        out["episodes"].append({"episode": k + 1, "return_train": ret_train[k], "return_held_out": ret_test[k],
                                "held_out_steps": count, **share})
        print(f"| {k + 1} | {ret_train[k]:.2f} | {ret_test[k]:.2f} | {share['per_training_cell']:.4f} | "
              f"{share['per_held_out_cell']:.4f} | {count} of {int(visits[k].sum())} |")
    print(f"(uniform share per cell: {1 / size**2:.4f}; steps counted on the training-goal trials)")
    out["find_and_return"] = found
    print("\nThe last episode, split into finding the goal and coming back to it "
          "(srwm_rl.eval.search.find_and_return):")
    print("| goals | found by episode 1..K | found before the last episode | of those, back in the last | "
          "last-episode return if found before / if not |")
    print("|---|---|---|---|---|")
    for name, f in found.items():
        print(f"| {name} | {' -> '.join(f'{x:.2f}' for x in f['found_by'])} | {f['found_before_last']:.2f} | "
              f"{f['returned']:.2f} | {f['last_if_found']:.2f} / {f['last_if_not_found']:.2f} |")
    folder = Path(args.out or args.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "darkroom_search.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
