"""engine/process_guard.py without vLLM: a process named as vLLM names its engine core dies with its
parent, and an interrupted start can kill its cores. The real engine: test_engine_process.py."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import psutil

from engine import process_guard


def _core(ready):
    ready.put((os.getpid(), process_guard.bind_to_parent()))
    time.sleep(120)


def _parent(ready):
    ctx = multiprocessing.get_context("spawn")
    ctx.Process(target=_core, args=(ready,), name="EngineCore").start()
    time.sleep(120)


def _dead(pid: int, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_an_engine_core_dies_with_its_parent():
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    parent = ctx.Process(target=_parent, args=(ready,))
    parent.start()
    core, bound = ready.get(timeout=60)
    assert bound
    os.kill(parent.pid, signal.SIGKILL)  # no handler, no cleanup: only the kernel can end the core
    parent.join(10)
    assert _dead(core, 10), "the engine core outlived its SIGKILLed parent"


def test_only_an_engine_core_binds_itself():
    assert process_guard.bind_to_parent() is False  # this test process is nobody's engine core


def test_an_interrupted_start_kills_its_cores_and_spares_running_engines():
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    running = ctx.Process(target=_core, args=(ready,), name="EngineCore")  # an engine already serving
    running.start()
    ready.get(timeout=60)
    spare = process_guard.engine_core_pids()
    assert running.pid in spare
    started = ctx.Process(target=_core, args=(ready,), name="EngineCore")  # the interrupted start's core
    started.start()
    ready.get(timeout=60)
    try:
        assert process_guard.kill_engine_cores(spare=spare) == 1
        assert not started.is_alive()
        assert running.is_alive(), "an interrupted start killed another engine's core"
    finally:
        running.kill()
        running.join(10)
