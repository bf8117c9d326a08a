"""The engine-core process ends with the process that started it.

vLLM runs its EngineCore (`VLLM::EngineCore`) as a child process. If the command
that started it dies without shutting the engine down (SIGKILL, a crash, a
SIGTERM with no handler), the core would stay behind, holding its memory and
cores. `bind_to_parent` runs inside the core, from the vLLM plugin that vLLM
loads in every engine process (engine/cpu_lora_plugin.py `register`): the kernel
then sends the core SIGKILL when its parent goes (Linux PR_SET_PDEATHSIG).

The "parent" is the parent's thread that spawned the core: VllmEngine's loop
thread, which lives exactly as long as the engine (it stops after the core was
shut down), so a running engine is never killed by this.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_bound = False


def is_engine_core() -> bool:
    """Whether this process is a vLLM engine core (vLLM names the process `EngineCore[_DPn]`)."""
    return multiprocessing.current_process().name.startswith("EngineCore")


def bind_to_parent() -> bool:
    """In an engine core: die with the parent. Returns whether the binding is in place."""
    global _bound
    if _bound or not is_engine_core() or not sys.platform.startswith("linux"):
        return _bound
    parent = multiprocessing.parent_process()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    _bound = True
    if parent is not None and os.getppid() != parent.pid:  # the parent died before the binding
        os._exit(1)
    return True


def engine_core_pids() -> frozenset[int]:
    """The pids of this process's live engine-core children."""
    return frozenset(c.pid for c in multiprocessing.active_children()
                     if c.name.startswith("EngineCore") and c.pid is not None)


def kill_engine_cores(spare: frozenset[int] = frozenset()) -> int:
    """Kill this process's engine-core children now, except those in `spare` (an engine whose start
    was interrupted has no AsyncLLM to shut it down; engines already running in this process are
    spared: the caller passes `engine_core_pids()` taken before the start). Returns how many."""
    n = 0
    for child in multiprocessing.active_children():
        if child.name.startswith("EngineCore") and child.pid not in spare:
            child.kill()
            child.join(timeout=10)
            n += 1
    return n
