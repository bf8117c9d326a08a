"""Batches of packed sequences: several training examples in one forward pass.

On a CPU one sequence per forward pass is fastest (no padding, and the cores are
busy anyway). A GPU needs thousands of tokens per pass to be busy, so there the
examples of one optimizer step are laid out as rows of a [rows, length] tensor:
each row holds one or more whole examples back to back, and the rest of a row is
padding. Position ids restart at 0 for every example (and for the padding), which
transformers reads as packed sequences and masks so that no token attends across
an example's boundary: each example's loss is what it would be alone.

Every completion token carries a weight, `scale / n_target` of its example, so
the batch's objective is the sum over its examples of their mean token loss
times `scale`: exactly what the per-sequence loop accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from training.examples import Example

IGNORE = -100   # no loss at this position


def pack_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `row_len` tokens, longest first,
    each into the first row it fits (first-fit decreasing); an item longer than `row_len`
    gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_len - lengths[i])
    return rows


def micro_batches(examples: Sequence[Example], batch_tokens: int) -> list[list[Example]]:
    """Consecutive groups of `examples` of at most `batch_tokens` tokens each (at least one
    example per group); `batch_tokens` <= 0: one example per group."""
    if batch_tokens <= 0:
        return [[e] for e in examples]
    out: list[list[Example]] = []
    used = 0
    for e in examples:
        if out and used + len(e.ids) <= batch_tokens:
            out[-1].append(e)
            used += len(e.ids)
        else:
            out.append([e])
            used = len(e.ids)
    return out


@dataclass(frozen=True)
class Batch:
    ids: torch.Tensor         # [rows, length] token ids (padding: 0)
    positions: torch.Tensor   # [rows, length] restart at 0 for each example and for the padding
    targets: torch.Tensor     # [rows, length] the token each position predicts, IGNORE where no loss
    weights: torch.Tensor     # [rows, length] float32: each target's share of the objective
    tokens: int               # example tokens (padding excluded)
    target_tokens: int

    def to(self, device) -> "Batch":
        return Batch(self.ids.to(device), self.positions.to(device), self.targets.to(device),
                     self.weights.to(device), self.tokens, self.target_tokens)


def make_batch(examples: Sequence[Example], scale: float = 1.0, row_len: int | None = None) -> Batch:
    """`examples` packed into rows of `row_len` tokens (default: the longest example's length)."""
    lengths = [len(e.ids) for e in examples]
    rows = pack_rows(lengths, row_len or max(lengths))
    length = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    positions = torch.zeros(len(rows), length, dtype=torch.long)
    targets = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    weights = torch.zeros(len(rows), length, dtype=torch.float32)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            e, n = examples[i], lengths[i]
            ids[r, at:at + n] = torch.tensor(e.ids)
            positions[r, at:at + n] = torch.arange(n)
            # Position t predicts token t + 1: the completion's tokens from its last prompt token on.
            targets[r, at + e.n_prompt - 1: at + n - 1] = torch.tensor(e.ids[e.n_prompt:])
            weights[r, at + e.n_prompt - 1: at + n - 1] = scale / max(e.n_target, 1)
            at += n
        positions[r, at:] = torch.arange(length - at)   # the padding is a sequence of its own
    return Batch(ids, positions, targets, weights, sum(lengths), sum(e.n_target for e in examples))


def batch_loss(pm, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weighted objective to backpropagate, the summed completion-token loss).

    The decoder runs over every position; the LM head (a large share of a small model's
    FLOPs) only over the positions that have a target. `use_cache=False` matters: with a
    cache transformers would not read the position ids as packed sequences."""
    inner = pm.get_base_model()
    hidden = inner.model(input_ids=batch.ids, position_ids=batch.positions, use_cache=False).last_hidden_state
    where = batch.targets != IGNORE
    logits = inner.lm_head(hidden[where]).float()
    losses = torch.nn.functional.cross_entropy(logits, batch.targets[where], reduction="none")
    return (losses * batch.weights[where]).sum(), losses.sum().detach()
