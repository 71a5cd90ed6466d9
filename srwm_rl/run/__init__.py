"""A training run: its configuration (config), checkpoints (checkpoint), run directory and logging
(runlog), the environment it trains on (environment), loading an agent back (agent), and the harness
every algorithm trains in (harness, rollout)."""
