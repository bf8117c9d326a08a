"""A child Python process that is SIGKILLed at a chosen point of its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def kill_when_ready(script: str) -> None:
    """Run `script` (python -c); SIGKILL it as soon as it prints READY."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
