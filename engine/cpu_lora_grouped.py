"""Grouped LoRA math for vLLM's CPU path (installed by engine/cpu_lora_plugin.py).

A LoRA layer adds, for each token t with adapter slot s(t): y_t += scale * x_t A_s^T B_s^T,
over every output slice of the layer (q/k/v, gate/up, or one slice). Doing that fast
on two CPU cores is a matter of keeping the FLOPs minimal AND the number of torch ops
small, since each op costs microseconds of dispatch whatever its size:

- Tokens are grouped by slot once per step (`Groups`): a (k, g) table of token rows,
  k = the slots between the lowest and highest one in use, g = the largest group
  (shorter groups are padded with any row; padded outputs are never read).
- Per layer, the float32 weights of every slot are kept fused (`FusedWeights`):
  A as (slots, in, n_slices*rank) with the slices side by side, B as
  (slots, n_slices*rank, out) block-diagonal. One bmm gives each group its rank-r
  projections for all slices, a second bmm the whole layer's output: 8 ops per
  layer whatever the number of slices or adapters, and about the FLOPs of the
  tokens' own adapters (stacking all slots into one masked matmul instead spends
  8x the FLOPs at one adapter and runs at 0.4x base speed).
- Rows without an adapter get exactly +0 (the mixed-batch fix is built in): they are
  skipped, or read an all-zero row when results go back to token order by a gather.
- float32 because tiny bf16 matmuls are ~7x slower than fp32 on this CPU. The
  float32 copies follow vLLM's writes: `activate_adapter` is the only writer
  (reset_lora + set_lora of one slot) and is logged (`note_activation`), so only
  the slots activated since are refreshed; a write that was not logged rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# --- which slots vLLM has written ----------------------------------------------------

_LOG_LEN = 1024
_activations: list[int] = []  # slot index per activation, the last _LOG_LEN of them
_activation_count = 0         # activations ever


def note_activation(slot: int) -> None:
    global _activation_count
    _activations.append(slot)
    _activation_count += 1
    if len(_activations) > _LOG_LEN:
        del _activations[: len(_activations) - _LOG_LEN]


def activation_count() -> int:
    return _activation_count


def slots_written_since(seen: int) -> set[int] | None:
    """Slots activated after activation number `seen`; None when the log no longer reaches back."""
    behind = _activation_count - seen
    if behind > len(_activations):
        return None
    return set(_activations[len(_activations) - behind:]) if behind else set()


# --- fused float32 weights per layer ---------------------------------------------------

@dataclass
class FusedWeights:
    a: torch.Tensor         # (slots, in, n_slices*rank)
    b: torch.Tensor         # (slots, n_slices*rank, out), block-diagonal per slice
    versions: tuple[int, ...]
    seen: int               # activation count when last synced


_cache: dict[int, tuple[tuple, FusedWeights]] = {}  # id(first A stack) -> (the stacks, weights)


def _versions(a_stacks, b_stacks) -> tuple[int, ...]:
    return tuple(t._version for t in a_stacks) + tuple(t._version for t in b_stacks)


def _fill_slot(w: FusedWeights, a_stacks, b_stacks, widths, s: int) -> None:
    rank = a_stacks[0].shape[2]
    w.b[s].zero_()
    col = 0
    for i, (a, b, width) in enumerate(zip(a_stacks, b_stacks, widths)):
        w.a[s, :, i * rank:(i + 1) * rank] = a[s, 0].float().t()
        w.b[s, i * rank:(i + 1) * rank, col:col + width] = b[s, 0, :width].float().t()
        col += width


def fused(a_stacks, b_stacks, widths) -> FusedWeights:
    key = id(a_stacks[0])
    hit = _cache.get(key)
    stacks = tuple(a_stacks) + tuple(b_stacks)
    if hit is not None and len(hit[0]) == len(stacks) and all(x is y for x, y in zip(hit[0], stacks)):
        w = hit[1]
        versions = _versions(a_stacks, b_stacks)
        if w.versions == versions:
            return w
        written = slots_written_since(w.seen)
        if written:  # empty: a write nobody logged, rebuild below
            for s in written:
                _fill_slot(w, a_stacks, b_stacks, widths, s)
            w.versions, w.seen = versions, _activation_count
            return w
    slots, _, rank, d_in = a_stacks[0].shape
    w = FusedWeights(torch.zeros(slots, d_in, len(a_stacks) * rank),
                     torch.zeros(slots, len(a_stacks) * rank, sum(widths)),
                     _versions(a_stacks, b_stacks), _activation_count)
    for s in range(slots):
        _fill_slot(w, a_stacks, b_stacks, widths, s)
    _cache[key] = (stacks, w)
    return w


# --- tokens grouped by slot, once per step -------------------------------------------------

_PAD_ROWS = 256  # padded rows tolerated before a step's slots are done one by one


@dataclass(frozen=True)
class Groups:
    lo: int                 # lowest slot in use
    k: int                  # slots lo .. lo+k-1
    g: int                  # rows per slot group (the largest group; others padded)
    gather: torch.Tensor    # (k*g,) token row for each group position (padding: row 0)
    pos: torch.Tensor       # group position of each token that has an adapter
    rows: torch.Tensor      # those tokens' rows, aligned with pos
    n: int                  # tokens in the step
    in_order: bool          # rows are 0..n-1 and already grouped: no gather or scatter needed
    back: torch.Tensor | None = None  # (n,) group position of every token row; base rows -> k*g (a zero row)
    segments: tuple = ()    # ((slot, its rows), ...) when padding would waste more than it saves


def groups(indices: torch.Tensor) -> Groups | None:
    """Group the step's tokens by adapter slot; None when no token has an adapter."""
    rows = torch.nonzero(indices >= 0, as_tuple=False).squeeze(1)
    if rows.numel() == 0:
        return None
    slots = indices[rows]
    lo = int(slots.min())
    rel = slots - lo
    k = int(rel.max()) + 1
    order = torch.argsort(rel, stable=True)
    rows, rel = rows[order], rel[order]
    counts = torch.bincount(rel, minlength=k)
    g = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    pos = rel * g + (torch.arange(rel.numel()) - starts[rel])
    gather = torch.zeros(k * g, dtype=torch.long)
    gather[pos] = rows
    n = int(indices.numel())
    # The common single-adapter step (or equal groups laid out slot by slot): x and y
    # are used as they are, which saves three of the seven ops per layer.
    in_order = k * g == n and bool(torch.equal(gather, torch.arange(n)))
    # Prefill steps are uneven (one long prompt per slot, slots between them unused): padding
    # every slot to the longest group multiplied the LoRA work up to k-fold on RAG-sized
    # prompts. Past a few hundred wasted rows, a loop over the slots in use is cheaper, since
    # such a step is big enough that two matmuls per slot cost more than their dispatch.
    segments: tuple = ()
    if k * g - rows.numel() > max(_PAD_ROWS, rows.numel()):
        per_slot = torch.split(rows, counts.tolist())
        segments = tuple((lo + i, r) for i, r in enumerate(per_slot) if r.numel())
    # The way back from the group table to token order is a gather, not a scatter: index_add_
    # into the bf16 output was a quarter of a 64-adapter decode step (each call an OpenMP region
    # that waits for the core the engine's front-end process holds); a gather plus a dense add
    # costs about half as much. Base rows read an all-zero row, and y + 0 is exactly y.
    back = None
    if not in_order and not segments:
        back = torch.full((n,), k * g, dtype=torch.long)
        back[rows] = pos
    return Groups(lo, k, g, gather, pos, rows, n, in_order, back, segments)


def apply(y: torch.Tensor, x: torch.Tensor, grp: Groups, w: FusedWeights, scale: float) -> None:
    """y[rows, :out] += scale * x[rows] A_s^T B_s^T for every row with an adapter, in place."""
    out = w.b.shape[2]
    target = y if y.shape[1] == out else y[:, :out]
    if grp.segments:
        for slot, rows in grp.segments:
            h = x.index_select(0, rows).float() @ w.a[slot]
            if scale != 1.0:
                h.mul_(scale)
            target.index_add_(0, rows, (h @ w.b[slot]).to(y.dtype))
        return
    xs = x[:grp.n] if grp.in_order else x.index_select(0, grp.gather)
    h = torch.bmm(xs.float().view(grp.k, grp.g, -1), w.a[grp.lo:grp.lo + grp.k])
    if scale != 1.0:
        h.mul_(scale)
    if grp.in_order:
        delta = torch.bmm(h, w.b[grp.lo:grp.lo + grp.k]).view(grp.k * grp.g, out)
        target[:grp.n] += delta  # float32 into bf16 in place: one op, no separate cast
        return
    # One spare group row past the table stays zero for the base rows to read.
    delta = torch.zeros(grp.k * grp.g + 1, out, dtype=h.dtype)
    torch.bmm(h, w.b[grp.lo:grp.lo + grp.k], out=delta[:-1].view(grp.k, grp.g, out))
    target[:grp.n] += delta.index_select(0, grp.back)
