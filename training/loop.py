"""The optimisation loop: warmup + cosine schedule, autocast in the dtype
codetailor/hardware.py chose (none when that is float32), checkpoints so a killed
run resumes where it stopped.

An optimizer step takes `grad_accum` sequences. On a CPU each forward pass is one
sequence (no padding); with `batch_tokens` (a GPU) a step's sequences go through
in batches of packed rows (training/batches.py), with the same objective.

Loss is computed only where it is needed: the decoder runs over the whole
sequence, the LM head (49k-way, a fifth of the model's FLOPs) only over the
completion positions.

A time budget is kept, not just checked: with `ramp` the first steps of a run are
small (1, 2, 4 ... sequences) until the rate is known, and from then on a step
takes only the sequences predicted to fit in the time left. The first step is
always taken, so a budget that passed training.budget's minimum gives an adapter.
The schedule's progress is the larger of steps done / steps planned and time
used / time budget, so a budgeted run still anneals to zero before it stops.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from codetailor.atomic import atomic_write_bytes
from codetailor.errors import QuotaExceeded

from training.corpus import TrainingError
from training.batches import batch_loss, make_batch, micro_batches
from training.examples import Example
from training.lora import load_lora_state, lora_state, trainable


class TrainingTimeCapExceeded(TrainingError, QuotaExceeded):
    """A run asked for, or already used, more training time than the per-tenant cap allows."""


@dataclass
class LoopState:
    micro: int = 0              # sequences consumed (position in the planned order)
    step: int = 0               # optimizer steps taken
    tokens: int = 0             # tokens processed (prompt + completion)
    target_tokens: int = 0      # completion tokens (the loss's tokens)
    seconds: float = 0.0        # time spent in the loop, over all resumed runs
    loss_sum: float = 0.0       # summed completion-token loss of all sequences seen
    recent: list[float] = field(default_factory=list)  # mean loss of the last optimizer steps
    resumed_from: int = 0


@dataclass(frozen=True)
class LoopConfig:
    lr: float
    grad_accum: int
    epochs: float
    warmup_fraction: float
    seed: int
    time_budget: float | None = None
    checkpoint_seconds: float = 60.0
    autocast: torch.dtype | None = None   # None: no autocast (the float32 choice)
    max_seconds: float | None = None   # per-tenant cap on loop seconds, resumed runs included
    batch_tokens: int = 0   # tokens per forward pass, packed in rows; 0: one sequence per pass
    ramp: bool = False      # small first steps until the rate is known (a time-budgeted run)


def autocast(dtype: torch.dtype | None, device: str = "cpu"):
    """Autocast to `dtype` on `device` ("cpu", "cuda"), or nothing for None / float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=dtype)


def model_device(pm) -> torch.device:
    return next(pm.parameters()).device


def sequence_loss(pm, ex: Example) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the completion tokens of one example."""
    inner = pm.get_base_model()
    ids = torch.tensor([ex.ids], dtype=torch.long, device=model_device(pm))
    hidden = inner.model(input_ids=ids, use_cache=False).last_hidden_state
    h = hidden[0, ex.n_prompt - 1: len(ex.ids) - 1]     # position t predicts token t+1
    logits = inner.lm_head(h).float()
    target = ids[0, ex.n_prompt:]
    return F.cross_entropy(logits, target, reduction="sum"), int(target.numel())


@torch.no_grad()
def example_losses(pm, examples: Sequence[Example], adapter: bool = True,
                   dtype: torch.dtype | None = None) -> list[tuple[float, int]]:
    """(summed completion-token loss, completion tokens) of each example, with the adapter or
    with the base model alone, under autocast(dtype)."""
    out = []
    pm.eval()
    ctx = pm.disable_adapter() if not adapter else contextlib.nullcontext()
    with ctx, autocast(dtype, model_device(pm).type):
        for ex in examples:
            loss, k = sequence_loss(pm, ex)
            out.append((float(loss), k))
    return out


def pooled(losses: Sequence[tuple[float, int]]) -> float | None:
    """Mean token loss of (sum, tokens) pairs; None for none."""
    if not losses:
        return None
    return sum(s for s, _ in losses) / max(1, sum(n for _, n in losses))


def mean_loss(pm, examples: Sequence[Example], adapter: bool = True,
              dtype: torch.dtype | None = None) -> float | None:
    """Mean completion-token loss, with the adapter or with the base model alone, under autocast(dtype)."""
    return pooled(example_losses(pm, examples, adapter, dtype))


def order(n: int, epochs: float, seed: int) -> list[int]:
    """The planned sequence of example indices: a fresh seeded shuffle per epoch."""
    total = max(1, round(n * epochs))
    out: list[int] = []
    e = 0
    while len(out) < total:
        perm = list(range(n))
        random.Random(seed * 1000 + e).shuffle(perm)
        out.extend(perm)
        e += 1
    return out[:total]


def step_size(cfg: LoopConfig, run_steps: int) -> int:
    """Sequences in a step, `run_steps` steps into this run: `grad_accum`, or with `ramp`
    1, 2, 4 ... up to it, so the first step is short and its rate tells what fits."""
    return min(cfg.grad_accum, 2 ** run_steps) if cfg.ramp else cfg.grad_accum


def planned_steps(n: int, cfg: LoopConfig) -> int:
    """Optimizer steps for `n` planned sequences."""
    steps = done = 0
    while done < n and steps < 64 and step_size(cfg, steps) < cfg.grad_accum:
        done += step_size(cfg, steps)
        steps += 1
    return steps + max(0, math.ceil((n - done) / cfg.grad_accum))


def fitting(lengths: Sequence[int], seconds_per_token: float | None, left: float) -> int:
    """How many of the next sequences (token `lengths`) are predicted to finish in `left`
    seconds at the measured rate; all of them while the rate is unknown."""
    if seconds_per_token is None:
        return len(lengths)
    used, k = 0.0, 0
    for n in lengths:
        used += n * seconds_per_token
        if used > left:
            break
        k += 1
    return k


def lr_at(cfg: LoopConfig, step: int, total_steps: int, elapsed: float) -> float:
    progress = step / total_steps
    if cfg.time_budget:
        progress = max(progress, elapsed / cfg.time_budget)
    w = cfg.warmup_fraction
    if w > 0 and progress < w:
        return cfg.lr * max(progress / w, 1.0 / max(1, total_steps))
    rest = min(1.0, (progress - w) / (1 - w)) if w < 1 else 1.0
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * rest))


class Checkpoint:
    """One resumable state file under the tenant's work dir, written atomically."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key

    def load(self, pm, opt) -> LoopState | None:
        if not self.path.is_file():
            return None
        try:
            # Tensors and plain containers only: unpickling anything else could run code planted
            # in the tenant's work dir. The loop state is saved as plain JSON-able data for this.
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:   # a torn, foreign or code-carrying file: start over rather than fail
            return None
        if not isinstance(data, dict) or data.get("key") != self.key:
            return None
        load_lora_state(pm, data["lora"])
        opt.load_state_dict(data["optimizer"])
        state = LoopState(**data["state"])
        state.resumed_from = state.micro
        return state

    def save(self, pm, opt, state: LoopState) -> None:
        buf = io.BytesIO()
        torch.save({"key": self.key, "lora": lora_state(pm), "optimizer": opt.state_dict(),
                    "state": asdict(state)}, buf)
        atomic_write_bytes(self.path, buf.getvalue())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def check_time_cap(time_budget: float | None, max_seconds: float | None) -> None:
    if max_seconds is not None and time_budget is not None and time_budget > max_seconds:
        raise TrainingTimeCapExceeded(
            f"the time budget of {time_budget:g}s is above the per-tenant training cap of {max_seconds:g}s "
            f"(training.max_seconds); ask for at most that")


def _capped(cfg: LoopConfig, state: LoopState) -> LoopConfig:
    """The loop's budget under the cap: what the cap leaves after the seconds already trained."""
    if cfg.max_seconds is None:
        return cfg
    check_time_cap(cfg.time_budget, cfg.max_seconds)
    left = cfg.max_seconds - state.seconds
    if left <= 0:
        raise TrainingTimeCapExceeded(
            f"this run already trained {state.seconds:.0f}s over its resumed parts, the per-tenant cap "
            f"(training.max_seconds = {cfg.max_seconds:g}s); it cannot continue")
    budget = left if cfg.time_budget is None else min(cfg.time_budget, left)
    return replace(cfg, time_budget=budget)


def _optimizer_step(pm, opt, lr: float) -> None:
    """One AdamW step at `lr` on the accumulated gradients (clipped to norm 1), which it clears."""
    for g in opt.param_groups:
        g["lr"] = lr
    torch.nn.utils.clip_grad_norm_(trainable(pm), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def run_loop(pm, examples: Sequence[Example], cfg: LoopConfig, checkpoint: Checkpoint | None,
             progress: bool = True, on_step: Callable[[LoopState], None] | None = None,
             clock: Callable[[], float] = time.monotonic) -> LoopState:
    if not examples:
        raise TrainingError("no training examples")
    plan = order(len(examples), cfg.epochs, cfg.seed)
    total_steps = planned_steps(len(plan), cfg)
    opt = torch.optim.AdamW(trainable(pm), lr=cfg.lr, weight_decay=0.0)
    state = (checkpoint.load(pm, opt) if checkpoint else None) or LoopState()
    cfg = _capped(cfg, state)
    device = model_device(pm)
    pm.train()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), initial=state.micro, unit="seq", desc="training", dynamic_ncols=True)
    started = clock()
    base_seconds = state.seconds
    last_save = started
    run_steps = run_tokens = 0
    try:
        while state.micro < len(plan):
            step = [examples[i] for i in plan[state.micro: state.micro + step_size(cfg, run_steps)]]
            if cfg.time_budget is not None and run_steps > 0:
                # Only what is predicted to fit in the time left; the first step of a run is always taken.
                left = cfg.time_budget - (clock() - started)
                step = step[:fitting([len(e.ids) for e in step], (clock() - started) / run_tokens, left)]
                if not step:
                    break
            done, step_loss, step_targets = 0, 0.0, 0
            for group in micro_batches(step, cfg.batch_tokens):
                batch = make_batch(group, scale=1.0 / len(step)).to(device)
                with autocast(cfg.autocast, device.type):
                    objective, loss_sum = batch_loss(pm, batch)
                objective.backward()
                value = loss_sum.item()
                step_loss += value
                step_targets += batch.target_tokens
                state.loss_sum += value
                state.tokens += batch.tokens
                state.target_tokens += batch.target_tokens
                state.micro += len(group)
                run_tokens += batch.tokens
                done += len(group)
                if bar is not None:
                    bar.update(len(group))
                if (cfg.time_budget is not None and run_steps > 0 and done < len(step)
                        and clock() - started >= cfg.time_budget):
                    break   # slower than predicted: step with what is there, then stop
            if done < len(step):
                for p in trainable(pm):   # the objective was scaled for the whole step
                    if p.grad is not None:
                        p.grad.mul_(len(step) / done)
            _optimizer_step(pm, opt, lr_at(cfg, state.step, total_steps, clock() - started))
            state.step += 1
            run_steps += 1
            state.recent = (state.recent + [step_loss / max(step_targets, 1)])[-20:]
            now = clock()
            state.seconds = base_seconds + (now - started)
            if on_step:
                on_step(state)
            if checkpoint and now - last_save >= cfg.checkpoint_seconds and state.micro < len(plan):
                checkpoint.save(pm, opt, state)
                last_save = clock()
            if bar is not None:
                bar.set_postfix(loss=f"{state.recent[-1]:.3f}",
                                tok_s=f"{state.tokens / max(state.seconds, 1e-9):.0f}", refresh=False)
            if done < len(step) or (cfg.time_budget is not None and now - started >= cfg.time_budget):
                break
    finally:
        if bar is not None:
            bar.close()
    state.seconds = base_seconds + (clock() - started)
    pm.eval()
    return state


def torch_threads(wanted: int = 0) -> int:
    """`wanted` threads, or (0) every core this process may use. On a box shared with
    other busy processes fewer threads can be much faster: OpenMP workers wait for
    each other at every op, and a preempted one stalls the rest (docs/training.md)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    n = wanted or n
    torch.set_num_threads(n)
    return n
