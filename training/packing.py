"""Sequence packing: a whole file as a few long "window" sequences.

A plain cursor ("line", "midline") is laid out in serving as just the repository
header and the file's prefix, so a left-to-right pass over the file already holds
every such cursor: position t of the sequence *is* a cursor after t tokens. One
sequence with loss on all its file tokens therefore trains as many cursors as it
has tokens, where a cursor example recomputes a full prompt for one completion
span (about 2 processed tokens per target token).

A file of N tokens becomes windows

    header ids + file[start - context : start] + file[start : end]
                 `-- no loss, the overlap --'   `-- loss --'

with `context` = 0 for the first window (its loss starts at the file's first
token, right after the header, as a cursor at the top of the file) and
`window_context` for the others, so each file token is a target exactly once and
every window fits in `seq_len`. The header is what `prompt_format.build` renders
for an empty prefix, so the windows keep the shared layout.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence


def window_bounds(n_tokens: int, room: int, context: int) -> list[tuple[int, int, int]]:
    """(context_start, target_start, target_end) per window over a file of `n_tokens`
    tokens, `room` = tokens left after the header. Targets tile [0, n_tokens)."""
    if room < 1:
        raise ValueError(f"no room for targets after the header ({room})")
    # A header longer than the config's budget shrinks the overlap, never the tiling.
    context = max(0, min(context, room // 2))
    out, start = [], 0
    while start < n_tokens:
        ctx = min(context, start)
        end = min(n_tokens, start + room - ctx)
        out.append((start - ctx, start, end))
        start = end
    return out


class LineIndex:
    """Token index -> 1-based line of the file text, from the tokenizer's offsets."""

    def __init__(self, text: str, offsets: Sequence[tuple[int, int]]):
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.offsets = offsets

    def line(self, char: int) -> int:
        return bisect_right(self.starts, char)

    def lines(self, start: int, end: int) -> tuple[int, int]:
        """First and last line touched by tokens [start, end)."""
        a = self.offsets[start][0]
        b0, b1 = self.offsets[end - 1]
        return self.line(a), self.line(max(b0, b1 - 1))
