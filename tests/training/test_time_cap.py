"""The per-tenant training time cap (training.max_seconds): a larger --time-budget is refused up
front, a run without one stops at the cap, and a resumed run cannot go past it."""

from __future__ import annotations

import pytest
import torch

from training import TrainOptions, train_tenant
from training.examples import Example
from training.loop import LoopConfig, LoopState, TrainingTimeCapExceeded, run_loop
from training.lora import attach_lora, load_base

from tests.training.conftest import tiny_settings


def test_a_budget_above_the_cap_is_refused_before_any_work(tenant_repo, tiny_llama, tmp_home):
    _, paths, _ = tenant_repo
    settings = tiny_settings(tmp_home, tiny_llama, max_seconds=60)
    with pytest.raises(TrainingTimeCapExceeded, match="above the per-tenant training cap of 60s"):
        train_tenant(settings, paths, TrainOptions(rank=4, alpha=8, epochs=1.0, time_budget=120, progress=False))


def test_the_cli_says_so_in_one_line(tenant_repo, tiny_llama, monkeypatch, capsys):
    from codetailor.cli import main

    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(tiny_llama))
    monkeypatch.setenv("CODETAILOR_TRAINING__MAX_SECONDS", "3600")
    assert main(["train", "--tenant", "acme", "--time-budget", "2h"]) != 0
    err = capsys.readouterr().err.strip()
    assert "per-tenant training cap of 3600s" in err and "\n" not in err


class _ResumedAt:
    """A checkpoint whose run already trained `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def load(self, pm, opt):
        return LoopState(micro=2, step=1, seconds=self.seconds)

    def save(self, *a):
        pass


def _pm_and_examples(tiny_llama):
    torch.set_num_threads(1)
    model, _ = load_base(tiny_llama, "bfloat16")
    pattern = tuple([11, 22, 33, 44, 55, 66, 77, 88] * 4)
    return attach_lora(model, 4, 8, seed=0), [Example(pattern, 8, "tenant", "line", "p.py")] * 4


def test_the_cap_stops_a_run_without_a_budget(tiny_llama):
    pm, examples = _pm_and_examples(tiny_llama)
    cfg = LoopConfig(lr=1e-3, grad_accum=1, epochs=10_000, warmup_fraction=0.0, seed=0, max_seconds=1.5)
    state = run_loop(pm, examples, cfg, checkpoint=None, progress=False)
    assert 0 < state.micro < 40_000 and state.seconds < 1.5 + 5  # stopped by the cap, at a step boundary


def test_a_resumed_run_cannot_train_past_the_cap(tiny_llama):
    pm, examples = _pm_and_examples(tiny_llama)
    cfg = LoopConfig(lr=1e-3, grad_accum=1, epochs=100, warmup_fraction=0.0, seed=0, max_seconds=10)
    with pytest.raises(TrainingTimeCapExceeded, match="already trained 12s"):
        run_loop(pm, examples, cfg, checkpoint=_ResumedAt(12.0), progress=False)
