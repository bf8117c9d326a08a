"""The joined BM25 table scores every row as its own segment does."""

import random

import numpy as np
import pytest

from retrieval.postings import Postings
from retrieval.segments import load_segment, write_segment


def _segments(tmp_path, sizes, seed=0):
    rng = random.Random(seed)
    segs, next_id = [], 0
    for si, n in enumerate(sizes):
        # each segment draws from a shifted vocabulary, so the segments' token ids disagree
        words = [f"w{i}" for i in range(si * 10, si * 10 + 40)]
        rows = [{"id": next_id + i, "source": "main", "path": f"s{si}/p{i % 5}.py", "symbol": None,
                 "text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))} for i in range(n)]
        next_id += n
        d = tmp_path / f"seg{si}"
        d.mkdir()
        write_segment(d, rows)
        segs.append(load_segment(d, tombstones=rng.sample(range(n), min(3, n // 2))))
    return segs


def _reference(segs, query, exclude):
    # each segment in a table of its own (a one-segment table is checked against bm25s in test_chunking.py)
    return np.concatenate([Postings([seg]).scores(query, exclude) for seg in segs])


@pytest.mark.parametrize("sizes", [[200], [150, 90, 300], [1, 120]])
def test_joined_scores_equal_each_segments_own(tmp_path, sizes):
    segs = _segments(tmp_path, sizes)
    postings = Postings(segs)
    rng = random.Random(1)
    words = sorted(t for t in postings.vocab if t)   # bm25s adds "" to every vocabulary
    for _ in range(30):
        query = [rng.choice(words) for _ in range(rng.randint(1, 8))] + ["never_seen"]
        query += query[:2]   # repeated tokens count once per repeat
        exclude = rng.sample(sorted(postings.rows_by_path), 2)
        ours = postings.scores(query, exclude)
        assert np.allclose(ours, _reference(segs, query, exclude), atol=1e-4)


def test_top_is_the_best_rows_located_in_their_segments(tmp_path):
    segs = _segments(tmp_path, [150, 90, 300], seed=4)
    postings = Postings(segs)
    query = ["w15", "w22", "w22", "w31"]
    ref = _reference(segs, query, [])
    top = postings.top(query, 20)
    assert [s for s, _, _ in top] == sorted((s for s, _, _ in top), reverse=True)
    assert np.isclose(top[0][0], ref.max(), atol=1e-4)
    assert np.allclose([s for s, _, _ in top], np.sort(ref)[::-1][:len(top)], atol=1e-4)
    for score, si, ri in top:
        assert 0 <= ri < len(segs[si].rows) and segs[si].live[ri] == 1.0
        assert np.isclose(score, ref[int(postings.offsets[si]) + ri], atol=1e-4)


def test_nothing_matches_and_nothing_indexed(tmp_path):
    postings = Postings(_segments(tmp_path, [50]))
    assert postings.top(["never_seen"], 5) == []
    assert postings.top(["w1"], 0) == []
    empty = Postings([])
    assert empty.n_rows == 0 and empty.top(["w1"], 5) == []


@pytest.mark.parametrize("n,positive,k", [(109_463, 60_000, 58), (1_000, 30, 58), (65, 65, 5), (64, 3, 1),
                                          (10, 0, 3), (200, 200, 200)])
def test_top_rows_are_the_k_largest_positive_scores(n, positive, k):
    from retrieval.postings import top_rows

    rng = np.random.default_rng(n + positive + k)
    scores = np.zeros(n)
    scores[rng.choice(n, positive, replace=False)] = rng.integers(1, 40, positive)   # many ties
    got = top_rows(scores, k)
    want = min(k, positive)
    assert len(got) == len(set(got.tolist())) == want
    assert (scores[got] > 0).all()
    if want:
        # the k best values, whichever of the tied rows was taken
        assert sorted(scores[got].tolist()) == sorted(np.sort(scores[scores > 0])[::-1][:want].tolist())


def test_top_rows_when_each_best_score_sits_in_its_own_block():
    from retrieval.postings import top_rows

    scores = np.zeros(64 * 12)
    scores[::64] = np.arange(12, 0, -1)   # one positive score per block of 64
    assert sorted(top_rows(scores, 10).tolist()) == list(range(0, 640, 64))
