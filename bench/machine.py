"""What every bench JSON records about the machine, and the load a bench can add to it.

`apply_wait_policy` must run before torch is imported: the OpenMP runtime reads
OMP_WAIT_POLICY / KMP_BLOCKTIME once, when it loads. `busy_core()` keeps one core
busy with another process (`python -c "while True: pass"`) for the "one core
taken" figures; the machine is shared, so `uptime` load is recorded with each run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def apply_wait_policy(policy: str | None) -> dict[str, str]:
    """Set OMP_WAIT_POLICY (passive/active; None: codetailor's default) and the matching KMP_BLOCKTIME."""
    from codetailor.hardware import apply_openmp_env

    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
        os.environ["KMP_BLOCKTIME"] = "0" if policy.lower() == "passive" else "200"
    return apply_openmp_env()


def load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def busy_core(on: bool = True) -> Iterator[None]:
    """Another process spinning on one core for the duration (nothing when `on` is false)."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it take its core
        yield
    finally:
        proc.kill()
        proc.wait()


def record(**chosen) -> dict:
    """The hardware record (codetailor/hardware.py) plus the bench's date, OpenMP settings (call after
    torch is imported, so the loaded runtime shows) and load; `chosen`: what the bench forced."""
    from codetailor.hardware import choose_dtypes, detect, hardware_record, openmp_env, openmp_runtimes

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "hardware": hardware_record(choose_dtypes(detect())),   # its "dtypes" are what `auto` picks here
            "openmp": {**openmp_env(), "runtimes": openmp_runtimes()}, "uptime": uptime(), **chosen}
