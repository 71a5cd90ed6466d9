"""``python -m srwm_rl``: the ``srwm-rl`` command."""
import sys

from srwm_rl.app.cli import main

sys.exit(main())
