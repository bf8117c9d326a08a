"""One read-optimised BM25 table over all of a tenant's segments, for searching.

Segments are the write side: each is a bm25s index with its own vocabulary, and a first index of
a large source writes several. Scoring them one by one repeats every per-query step (vocabulary
lookups, slicing posting lists, a scatter-add over the segment's rows, a top-n) once per segment;
at 100k chunks in six segments that repetition is about a third of a query. `Postings` joins the
segments' precomputed score columns into one column-compressed table over global row numbers when
a manifest is loaded, so a query does each step once. Scores are unchanged: each row keeps the
value its own segment computed (its own IDF): the same sums as bm25s' own scoring of that segment,
but one np.bincount over the gathered posting lists instead of np.add.at per token (about 5x faster
on long posting lists). A table of one segment is that segment scored alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from retrieval.segments import Segment


class Postings:
    def __init__(self, segments: Sequence[Segment]):
        # Built without sorting: each segment's columns are already in token order, so every
        # posting goes straight to its place (global column start + what earlier segments put
        # there). Within a column, rows end up in segment order, i.e. ascending global rows.
        self.vocab: dict[str, int] = {}
        self.offsets = np.zeros(len(segments) + 1, dtype=np.int64)
        self.rows_by_path: dict[str, list[int]] = {}
        columns = []   # per segment: (global token of each local column, local indptr)
        for si, seg in enumerate(segments):
            indptr = np.asarray(seg.bm25.scores["indptr"], dtype=np.int64)
            local_vocab, vocab = seg.bm25.vocab_dict, self.vocab
            to_global = np.empty(len(local_vocab), dtype=np.int64)
            to_global[np.fromiter(local_vocab.values(), np.int64, len(local_vocab))] = \
                [vocab.setdefault(token, len(vocab)) for token in local_vocab]
            columns.append((to_global[:len(indptr) - 1], indptr))
            offset = int(self.offsets[si])
            for path, local_rows in seg.rows_by_path.items():
                self.rows_by_path.setdefault(path, []).extend(r + offset for r in local_rows)
            self.offsets[si + 1] = offset + len(seg.rows)
        self.n_rows = int(self.offsets[-1])
        counts = np.zeros(len(self.vocab), dtype=np.int64)
        for tokens, indptr in columns:
            counts[tokens] += np.diff(indptr)   # a token appears once per segment's columns
        self.indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self.rows = np.empty(int(self.indptr[-1]), dtype=np.int32)
        self.values = np.empty(int(self.indptr[-1]), dtype=np.float32)
        filled = self.indptr[:-1].copy()
        for seg, offset, (tokens, indptr) in zip(segments, self.offsets, columns):
            sizes = np.diff(indptr)
            dest = np.repeat(filled[tokens] - indptr[:-1], sizes) + np.arange(int(indptr[-1]))
            self.rows[dest] = np.asarray(seg.bm25.scores["indices"]) + offset
            self.values[dest] = seg.bm25.scores["data"]
            filled[tokens] += sizes
        self.live = np.concatenate([seg.live for seg in segments]) if segments else np.zeros(0, np.float32)

    def scores(self, tokens: list[str], exclude_paths: Sequence[str] = ()) -> np.ndarray:
        """BM25 score of every global row (0 for tombstoned rows and rows of excluded paths).
        A token repeated in the query adds its column once per repeat, as bm25s does."""
        ids = [self.vocab[t] for t in tokens if t in self.vocab]
        if not ids:
            return np.zeros(self.n_rows)
        uniq, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        ip = self.indptr
        rows = np.concatenate([self.rows[ip[t]:ip[t + 1]] for t in uniq])
        values = np.concatenate([self.values[ip[t]:ip[t + 1]] * c if c > 1 else self.values[ip[t]:ip[t + 1]]
                                 for t, c in zip(uniq, counts)])
        out = np.bincount(rows, weights=values, minlength=self.n_rows)   # one scatter-add over all segments
        out *= self.live
        for p in exclude_paths or ():
            out[self.rows_by_path.get(p, [])] = 0.0
        return out

    def top(self, tokens: list[str], n: int, exclude_paths: Sequence[str] = ()) -> list[tuple[float, int, int]]:
        """The n best rows with a positive score, best first: (score, segment index, row in segment)."""
        if n <= 0 or not self.n_rows:
            return []
        scores = self.scores(tokens, exclude_paths)
        best = top_rows(scores, n)
        best = best[np.lexsort((best, -scores[best]))]   # ties: the earlier row first, always
        segment = np.searchsorted(self.offsets, best, side="right") - 1
        return [(float(scores[g]), int(s), int(g - self.offsets[s])) for g, s in zip(best, segment)]


def top_rows(scores: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Indices of the k largest positive scores (fewer when fewer are positive), in no order.

    np.argpartition over 100k scores costs about 1 ms, more than the scoring. The k-th largest of
    the per-block maxima is a floor: k blocks reach it, so the k-th largest score does too, and
    every one of the k best is at or above it. Only the few scores above the floor are partitioned."""
    if k <= 0 or not len(scores):
        return np.zeros(0, dtype=np.int64)
    whole = len(scores) - len(scores) % block
    maxima = scores[:whole].reshape(-1, block).max(axis=1)
    if whole < len(scores):
        maxima = np.append(maxima, scores[whole:].max())
    floor = np.partition(maxima, len(maxima) - k)[len(maxima) - k] if len(maxima) > k else 0.0
    candidates = np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(scores[candidates], len(candidates) - k)[len(candidates) - k:]]
    return candidates
