"""A command that started an engine leaves no `VLLM::EngineCore` behind: not when it is
stopped with SIGTERM mid-command (it shuts the engine down), not when it is SIGKILLed
(the core is bound to its parent's life, engine/process_guard.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from codetailor.home import Home
from codetailor.tenants import Registry

pytestmark = [pytest.mark.engine, pytest.mark.model]
ROOT = Path(__file__).resolve().parents[2]


def _engine_cores(proc: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in proc.children(recursive=True):
        try:
            if "EngineCore" in " ".join([p.name(), *p.cmdline()]):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _start_generate(tmp_path, base_model_path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    home = tmp_path / "home"
    Registry(Home(home), pepper="t").create_tenant("acme")
    env = dict(os.environ, CODETAILOR_HOME=str(home), CODETAILOR_KEY_PEPPER="t",
               CODETAILOR_MODEL__BASE=str(base_model_path), CODETAILOR_ENGINE__KV_CACHE_GIB="1",
               CODETAILOR_ENGINE__MAX_MODEL_LEN="1024", PYTHONPATH=str(ROOT))
    cli = subprocess.Popen([sys.executable, "-m", "codetailor", "generate", "--tenant", "acme", "--system", "base",
                            "--prefix", "def fibonacci(n):", "--max-tokens", "200"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    cores: list[psutil.Process] = []
    while time.time() < deadline and cli.poll() is None and not cores:
        cores = _engine_cores(psutil.Process(cli.pid))
        time.sleep(0.2)
    assert cores, f"no engine core appeared: {cli.stderr.read().decode()[-2000:] if cli.poll() is not None else ''}"
    return cli, cores


def _gone(cores: list[psutil.Process], within: float = 30.0) -> list[int]:
    _, alive = psutil.wait_procs(cores, timeout=within)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_mid_command_shuts_the_engine_down(tmp_path, base_model_path):
    cli, cores = _start_generate(tmp_path, base_model_path)
    time.sleep(3)  # the engine is loading or generating
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(120) != 0
    assert _gone(cores) == [], "an engine core outlived its command"


def test_a_killed_command_takes_its_engine_core_along(tmp_path, base_model_path):
    cli, cores = _start_generate(tmp_path, base_model_path)
    time.sleep(3)
    cli.kill()  # no handler runs: only the kernel's parent-death signal can end the core
    cli.wait(30)
    assert _gone(cores) == [], "an engine core outlived its SIGKILLed command"
