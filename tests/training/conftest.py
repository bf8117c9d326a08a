"""Shared helpers for the training tests: a small repo, a tenant and settings on the tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

# A small, repetitive code base: easy to learn, several files so the split has two sides.
_MODULE = '''"""Module {i}: counters."""


def make_counter_{i}(start):
    count = start
    def step():
        nonlocal count
        count += {i}
        return count
    return step


class Store{i}:
    def __init__(self):
        self.items = {{}}

    def put(self, key, value):
        self.items[key] = value
        return value

    def get(self, key, default=None):
        return self.items.get(key, default)
'''


def write_repo(root: Path, n: int = 6) -> Path:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "pkg" / f"mod{i}.py").write_text(_MODULE.format(i=i))
    return root


def tiny_settings(home: Path, base: Path, **training):
    from codetailor.config import load_settings

    t = dict(seq_len=96, target_tokens=48, grad_accum=2, eval_examples=4, checkpoint_seconds=0.01, lr=5e-3)
    t.update(training)
    return load_settings(home=home, model={"base": str(base)}, training=t)


@pytest.fixture
def tenant_repo(tmp_home, tmp_path):
    """(registry, tenant paths, repo root): a tenant whose one source is a small repo."""
    from codetailor.home import Home
    from codetailor.tenants import Registry

    repo = write_repo(tmp_path / "repo")
    reg = Registry(Home(tmp_home), pepper="test")
    paths, _ = reg.create_tenant("acme")
    reg.add_source(paths.tenant, "main", str(repo))
    return reg, paths, repo


@pytest.fixture
def one_thread():
    """The tiny model is all small ops: one thread avoids OpenMP stalls on the shared box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
