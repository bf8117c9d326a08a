"""A time budget is a budget (training/budget.py, the loop's ramp): refused before loading when
too small, small first steps, steps that fit, and loss passes sampled to fit with cached base losses."""

from __future__ import annotations

import pytest

import training.loop as loop
import training.run as run
from codetailor.adapters import AdapterStore
from training import TrainOptions, train_tenant
from training.budget import (BudgetTooSmall, check_budget, checkpoint_parameters, eval_sample_size, minimum_budget,
                             spread)
from training.examples import Example
from training.loop import LoopConfig, fitting, planned_steps, run_loop, step_size
from training.lora import attach_lora, load_base

from tests.training.conftest import tiny_settings


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> LoopConfig:
    d = dict(lr=1e-3, grad_accum=8, epochs=1.0, warmup_fraction=0.0, seed=0)
    d.update(kw)
    return LoopConfig(**d)


# -- planning, pure --------------------------------------------------------------------------

def test_the_minimum_is_one_sequence_at_a_slow_machines_rate():
    assert minimum_budget(134_515_008, 512) == 15.0        # SmolLM2-135M: 13.8 s, rounded up to 5 s
    assert minimum_budget(630_167_424, 512) == 65.0        # Qwen2.5-Coder-0.5B
    assert minimum_budget(1_000, 32) == 5.0
    check_budget(None, 10**9, 512)
    check_budget(15.0, 134_515_008, 512)
    with pytest.raises(BudgetTooSmall, match=r"budget of 10s is too small.*give --time-budget 15s or more"):
        check_budget(10.0, 134_515_008, 512)


def test_parameters_are_read_from_the_checkpoint_headers(tiny_llama):
    model, _ = load_base(tiny_llama, "float32")
    assert checkpoint_parameters(tiny_llama) == sum(p.numel() for p in model.parameters())


def test_steps_ramp_up_only_with_a_budget():
    assert [step_size(_cfg(ramp=True), k) for k in range(6)] == [1, 2, 4, 8, 8, 8]
    assert [step_size(_cfg(), k) for k in range(3)] == [8, 8, 8]
    assert planned_steps(100, _cfg()) == 13
    assert planned_steps(100, _cfg(ramp=True)) == 3 + 12   # 1 + 2 + 4, then 93 in steps of 8
    assert planned_steps(2, _cfg(ramp=True)) == 2


def test_a_step_takes_what_fits_at_the_measured_rate():
    assert fitting([100, 100, 100], None, 0.0) == 3          # rate unknown: the whole step
    assert fitting([100, 100, 100], 0.01, 2.5) == 2
    assert fitting([100, 100, 100], 0.01, 0.5) == 0


def test_the_loss_passes_are_sampled_to_fit():
    side = [(100, False)] * 24
    # 0.01 s per train token, forward at half that: an uncached example costs 2 x 100 x 0.005 = 1 s per side
    assert eval_sample_size(side, side, 0.01, 10.0) == 5
    cached = [(100, True)] * 24
    assert eval_sample_size(cached, cached, 0.01, 10.0) == 10   # cached base losses halve the cost
    assert eval_sample_size(side, side, 0.01, 10_000.0) == 24
    assert eval_sample_size(side, side, 10.0, 1.0) == 1         # never no losses at all
    assert spread(list(range(10)), 3) == [0, 3, 6] and spread([1, 2], 5) == [1, 2]


# -- the loop against a fake clock --------------------------------------------------------------

class _Clock:
    """Time passes only while the model works: `cost` seconds per processed token."""

    def __init__(self, cost: float):
        self.now, self.cost = 0.0, cost

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked(tiny_llama, monkeypatch):
    model, _ = load_base(tiny_llama, "float32")
    pm = attach_lora(model, 4, 8, seed=0)
    examples = [Example(tuple(range(10 + i, 42 + i)), 8, "tenant", "line", "p.py") for i in range(8)]  # 32 tokens
    real = loop.batch_loss

    def make(cost):
        clock = _Clock(cost)

        def timed(pm_, batch):
            clock.now += clock.cost * batch.tokens
            return real(pm_, batch)
        monkeypatch.setattr(loop, "batch_loss", timed)
        return clock
    return pm, examples, make


def test_a_budgeted_run_ramps_up_and_ends_within_its_budget(clocked):
    pm, examples, make = clocked
    clock = make(0.01)   # 0.32 s per sequence
    sizes = []
    seen = [0]

    def on_step(state):
        sizes.append(state.micro - seen[0])
        seen[0] = state.micro
    state = run_loop(pm, examples, _cfg(epochs=100, time_budget=5.0, ramp=True), None, progress=False,
                     on_step=on_step, clock=clock)
    assert sizes[:4] == [1, 2, 4, 8]
    assert state.seconds <= 5.0 and state.micro == 15   # 15 x 0.32 = 4.8 s: a 16th would not fit


def test_the_first_step_is_taken_even_when_one_sequence_outlasts_the_budget(clocked):
    pm, examples, make = clocked
    clock = make(1.0)    # 32 s per sequence against a budget of 5 s
    state = run_loop(pm, examples, _cfg(epochs=10, time_budget=5.0, ramp=True), None, progress=False, clock=clock)
    assert (state.step, state.micro) == (1, 1)   # an adapter, and nothing more


# -- the command ---------------------------------------------------------------------------

def test_a_small_budget_is_refused_before_the_model_loads(tenant_repo, tiny_llama, monkeypatch, capsys):
    from codetailor.cli import main

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(run, "load_base", no_load)
    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(tiny_llama))
    assert main(["train", "--tenant", "acme", "--time-budget", "2s"]) == 2
    err = capsys.readouterr().err.strip()
    assert "too small" in err and "--time-budget 5s or more" in err and "\n" not in err


def test_budgeted_runs_sample_the_loss_passes_and_reuse_base_losses(tenant_repo, tiny_llama, tmp_home, monkeypatch):
    _, paths, _ = tenant_repo
    settings = tiny_settings(tmp_home, tiny_llama, threads=1, eval_examples=6)
    base_passes = []
    real = run.example_losses

    def counted(pm, examples, adapter=True, dtype=None):
        if not adapter:
            base_passes.append(len(examples))
        return real(pm, examples, adapter, dtype)
    monkeypatch.setattr(run, "example_losses", counted)
    opts = TrainOptions(rank=4, alpha=8, epochs=1.0, time_budget=30.0, replay_ratio=0.2, progress=False)
    first = train_tenant(settings, paths, opts)
    assert first["time_budget"] == 30.0 and first["seconds"] <= 30.0 + 5
    measured = sum(base_passes)
    assert measured > 0 and paths.base_losses.is_file()
    base_passes.clear()
    second = train_tenant(settings, paths, opts)
    # the same examples: the base model's losses come from the cache, and agree with the first run's
    assert sum(base_passes) == 0
    assert second["eval_examples"]["heldout"] >= 1
    assert first["eval_examples"] == second["eval_examples"]
    a, b = (AdapterStore(paths).meta(v).losses for v in ("v0001", "v0002"))
    assert a["heldout_base"] == b["heldout_base"] and a["public_base"] == b["public_base"]
