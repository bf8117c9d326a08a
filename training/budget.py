"""What a training time budget buys, decided before the work it bounds.

`--time-budget` bounds the training loop. Three things keep the whole command
within the budget plus loading plus a bounded evaluation:
- before the model is loaded, a budget below what one step of one sequence can
  take on a slow machine is refused, naming the minimum (`check_budget`);
- the loop starts with small steps and takes only what fits (training/loop.py);
- the loss passes after training are sampled to fit `eval_share` of the budget at
  the rate the loop measured (`eval_sample_size`), and the base model's losses,
  which do not change between runs, come from a per-tenant cache when known.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence, TypeVar

from training.corpus import TrainingError
from training.examples import Example

# One training token costs about 4 FLOPs per base parameter: the forward pass and the input
# gradients back through the frozen base (the LoRA weights' own gradients are under 1 %).
TRAIN_FLOPS_PER_PARAMETER = 4
# What a loaded 2-core AVX2 machine sustains in float32 (docs/bench-training.md); the refusal's
# estimate must hold on the slowest machine codetailor supports, so it uses this, not a measurement.
SLOW_MACHINE_FLOPS = 20e9
# A forward pass without gradients costs about half a training token.
EVAL_COST_PER_TRAIN_TOKEN = 0.5

T = TypeVar("T")


class BudgetTooSmall(TrainingError):
    pass


def checkpoint_parameters(path: Path) -> int:
    """Parameters of the checkpoint at `path`, from its safetensors headers (no weights read)."""
    from safetensors import safe_open

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise TrainingError(f"base model at {path} has no safetensors weights")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                total += math.prod(st.get_slice(key).get_shape())
    return total


def minimum_budget(parameters: int, seq_len: int) -> float:
    """The smallest accepted budget: one step of one full-length sequence at a slow machine's
    rate, rounded up to whole 5 s."""
    seconds = parameters * TRAIN_FLOPS_PER_PARAMETER * seq_len / SLOW_MACHINE_FLOPS
    return float(5 * max(1, math.ceil(seconds / 5)))


def check_budget(budget: float | None, parameters: int, seq_len: int) -> None:
    """Refuse, before anything is loaded, a budget that cannot be sure of one training step."""
    if budget is None:
        return
    need = minimum_budget(parameters, seq_len)
    if budget < need:
        raise BudgetTooSmall(
            f"the time budget of {budget:g}s is too small: one training step of one {seq_len}-token sequence "
            f"of this {parameters / 1e6:.0f}M-parameter model can take {need:g}s on a slow machine; "
            f"give --time-budget {need:g}s or more")


def spread(items: Sequence[T], n: int) -> list[T]:
    """`n` of `items` evenly spaced over the sequence (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def eval_sample_size(heldout: Sequence[tuple[int, bool]], public: Sequence[tuple[int, bool]],
                     seconds_per_train_token: float, seconds: float) -> int:
    """How many examples per side the loss passes can measure in `seconds`.

    Each side is a list of (tokens, base loss cached) in the order `spread` samples them from;
    an example costs one forward pass with the adapter and one more without when its base loss
    is not cached. At least one example per side, so the losses are never missing."""
    per_token = seconds_per_train_token * EVAL_COST_PER_TRAIN_TOKEN
    most = max(len(heldout), len(public))
    best = 1
    for n in range(1, most + 1):
        cost = sum(tokens * (1 if cached else 2) for side in (heldout, public)
                   for tokens, cached in spread(side, n))
        if cost * per_token > seconds:
            break
        best = n
    return best


def example_key(ex: Example) -> str:
    """A stable name of an example's content (its tokens and where the completion starts)."""
    return hashlib.sha256(repr((ex.ids, ex.n_prompt)).encode()).hexdigest()[:32]


def cache_identity(checksum: str, dtype: str) -> str:
    """What a cached base loss depends on besides the example: the base weights and the compute dtype."""
    return f"{checksum}:{dtype}"
