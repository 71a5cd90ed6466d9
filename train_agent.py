"""Train an agent from a script: ``python train_agent.py [OPTIONS]`` is ``srwm-rl train [OPTIONS]``
(same flags, same help; ``python train_agent.py --help`` lists them)."""
import sys

from srwm_rl.app.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv[1:], "train_agent.py"))
