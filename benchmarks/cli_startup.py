"""Start-up time of the command line: `srwm-rl --help` against a bare `python -c pass` in the same
run (median of --repeats each, alternating), and `srwm-rl train --help` (which builds the full
option parser and imports torch) for reference.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "srwm-rl")
CASES = {"python -c pass (baseline)": [sys.executable, "-c", "pass"], "srwm-rl --help": [CLI, "--help"],
         "srwm-rl train --help": [CLI, "train", "--help"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.repeats):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass (baseline)"])
    print("| command | median s | min s | / python -c pass |\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.3f} | {min(ts):.3f} | {statistics.median(ts) / base:.1f} |")


if __name__ == "__main__":
    main()
