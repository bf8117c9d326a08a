"""Batches of packed sequences (training/batches.py): the batched loss is the per-sequence loss."""

from __future__ import annotations

import random

import pytest
import torch

from training.batches import IGNORE, batch_loss, make_batch, micro_batches, pack_rows
from training.examples import Example
from training.loop import sequence_loss
from training.lora import attach_lora, load_base, trainable


def _examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(6, 40)
        ids = tuple(rng.randint(1, 49_000) for _ in range(length))
        out.append(Example(ids, rng.randint(1, length - 1), "tenant", "line", f"f{i}.py"))
    return out


def test_rows_hold_whole_examples_within_the_row_length():
    lengths = [40, 10, 25, 30, 3, 12]
    rows = pack_rows(lengths, 40)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 40 for row in rows)
    assert rows == [[0], [3, 1], [2, 5, 4]]   # longest first, each into the first row with room
    assert pack_rows([50, 3], 40) == [[0], [1]]   # too long for a row: a row of its own


def test_micro_batches_keep_order_and_the_token_limit():
    ex = _examples(9)
    groups = micro_batches(ex, 60)
    assert [e for g in groups for e in g] == ex
    assert all(len(g) == 1 or sum(len(e.ids) for e in g) <= 60 for g in groups)
    assert micro_batches(ex, 0) == [[e] for e in ex]


def test_targets_and_weights_follow_each_examples_completion():
    a = Example((1, 2, 3, 4, 5), 2, "tenant", "line", "a.py")
    b = Example((6, 7, 8), 1, "tenant", "line", "b.py")
    batch = make_batch([a, b], scale=0.5, row_len=8)
    assert batch.ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert batch.positions.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch.targets.tolist() == [[IGNORE, 3, 4, 5, IGNORE, 7, 8, IGNORE]]
    w = batch.weights.tolist()[0]
    assert w[1:4] == [pytest.approx(0.5 / 3)] * 3 and w[5:7] == [pytest.approx(0.25)] * 2 and w[0] == w[4] == 0
    padded = make_batch([a, b])   # rows of the longest example: b goes in a second, padded row
    assert padded.ids.shape == (2, 5) and padded.positions[1].tolist() == [0, 1, 2, 0, 1]
    assert (padded.tokens, padded.target_tokens) == (8, 5)


def test_the_batched_loss_and_gradients_equal_the_per_sequence_ones(tiny_llama):
    torch.set_num_threads(1)
    model, _ = load_base(tiny_llama, "float32")
    pm = attach_lora(model, 4, 8, seed=0)
    for p in trainable(pm):   # B starts at zero; give the adapter a non-trivial effect
        torch.nn.init.normal_(p, std=0.05)
    examples = _examples(7, seed=3)
    scale = 1 / len(examples)

    pm.zero_grad()
    reference, reference_sum = 0.0, 0.0
    for ex in examples:
        loss, n = sequence_loss(pm, ex)
        (loss / n * scale).backward()
        reference += float(loss.detach()) / n * scale
        reference_sum += float(loss.detach())
    expected = [p.grad.clone() for p in trainable(pm)]

    pm.zero_grad()
    batch = make_batch(examples, scale=scale, row_len=64)   # several examples per row, then padding
    assert batch.ids.shape[0] < len(examples)
    objective, loss_sum = batch_loss(pm, batch)
    objective.backward()
    assert float(objective.detach()) == pytest.approx(reference, rel=1e-5)
    assert float(loss_sum) == pytest.approx(reference_sum, rel=1e-5)
    for got, want in zip((p.grad for p in trainable(pm)), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
