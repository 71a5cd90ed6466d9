"""`srwm-rl --help` imports no sub-command (so no torch): its speed is measured by
benchmarks/cli_startup.py; this checks the structure that makes it fast, and that every lazy
command resolves."""
import subprocess
import sys

from srwm_rl.app.cli import COMMANDS


def test_top_level_help_imports_no_torch():
    code = ("import sys, contextlib, io\nfrom srwm_rl.app.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'tyro', 'gymnasium', 'agents') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_resolves():
    for c in COMMANDS.values():
        assert callable(c.main) and isinstance(c.options, type), c.name
