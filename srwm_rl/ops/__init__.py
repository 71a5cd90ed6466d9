"""The maths, as pure functions of tensors (no modules, no configs), each tested against a slow reference:
the SRWM recurrence and its faster paths (srwm, srwm_lean, srwm_fused + csrc/), GAE (returns),
V-trace (vtrace), and the policy-gradient losses (losses)."""
