"""The installed console script answers and lists every command group."""

import subprocess
import sys
from pathlib import Path

GROUPS = ("batch", "bench", "cues", "detail", "eval", "export", "fit", "model", "rig", "session", "synth", "texture")


def test_mvrecon_help_lists_the_command_groups():
    exe = Path(sys.executable).with_name("mvrecon")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert set(GROUPS) <= listed, sorted(set(GROUPS) - listed)


def test_unknown_command_fails():
    exe = Path(sys.executable).with_name("mvrecon")
    proc = subprocess.run([str(exe), "no-such-command"], capture_output=True, text=True)
    assert proc.returncode != 0 and "no-such-command" in proc.stderr
