"""Procgen's normalised score, (R - R_min) / (R_max - R_min), with the constants of Cobbe et al.
(2020, appendix) per game and distribution mode."""
from __future__ import annotations

import math
from typing import Optional

PROCGEN_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {"bigfish": (1, 40), "bossfight": (0.5, 13), "caveflyer": (3.5, 12), "chaser": (0.5, 13),
             "climber": (2, 12.6), "coinrun": (5, 10), "dodgeball": (1.5, 19), "fruitbot": (-1.5, 32.4),
             "heist": (3.5, 10), "jumper": (1, 10), "leaper": (1.5, 10), "maze": (5, 10), "miner": (1.5, 13),
             "ninja": (3.5, 10), "plunder": (4.5, 30), "starpilot": (2.5, 64)},
    "hard": {"bigfish": (0, 40), "bossfight": (0.5, 13), "caveflyer": (2, 13.4), "chaser": (0.5, 14.2),
             "climber": (1, 12.6), "coinrun": (5, 10), "dodgeball": (1.5, 19), "fruitbot": (-0.5, 27.2),
             "heist": (2, 10), "jumper": (1, 10), "leaper": (1.5, 10), "maze": (4, 10), "miner": (1.5, 20),
             "ninja": (2, 10), "plunder": (3, 30), "starpilot": (1.5, 35)},
}


def normalized_score(game: str, ret: float, distribution_mode: str = "easy") -> Optional[float]:
    """(R - R_min) / (R_max - R_min) with the Procgen constants; None where none are defined."""
    lo_hi = PROCGEN_RANGES.get(distribution_mode, {}).get(game)
    if lo_hi is None or math.isnan(ret):
        return None
    lo, hi = lo_hi
    return (ret - lo) / (hi - lo)
