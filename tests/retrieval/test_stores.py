"""The two vector stores answer alike (exact search) and keep tenants apart."""

import numpy as np
import pytest

from codetailor.home import Home
from retrieval.vectors import EdgeStore, ServiceStore, VecPoint, close_edge_shards


@pytest.fixture
def stores(tmp_path):
    home = Home(tmp_path / "home")
    a, b = home.tenant("alpha"), home.tenant("beta")
    edge = EdgeStore(a, 8, exact=True)
    svc_a = ServiceStore(":memory:", f"c{tmp_path.name}", a, 8, exact=True)
    svc_b = ServiceStore(":memory:", f"c{tmp_path.name}", b, 8, exact=True)
    yield edge, svc_a, svc_b
    edge.drop()
    svc_a.drop()
    svc_b.drop()
    close_edge_shards()


def _points(rng, n, gen, path_of=lambda i: f"f{i % 5}.py"):
    vecs = rng.normal(size=(n, 8))
    return [VecPoint(1000 + i, vecs[i], "main", path_of(i), gen) for i in range(n)]


def test_edge_and_service_store_agree(stores):
    edge, svc, other = stores
    rng = np.random.default_rng(0)
    pts = _points(rng, 60, 1) + [VecPoint(5000 + i, rng.normal(size=8), "main", "new.py", 2) for i in range(10)]
    for s in (edge, svc):
        s.upsert(pts)
    other.upsert([VecPoint(1000 + i, rng.normal(size=8), "main", "x.py", 1) for i in range(30)])  # same ids!
    cases = [dict(max_generation=1), dict(max_generation=2), dict(max_generation=1, exclude_paths=["f1.py", "f2.py"])]
    for q in rng.normal(size=(10, 8)):
        for case in cases:
            e = edge.search(q, 7, **case)
            s = svc.search(q, 7, **case)
            assert [i for i, _ in e] == [i for i, _ in s]
            assert np.allclose([x for _, x in e], [x for _, x in s], atol=1e-4)
            assert all(i < 5000 for i, _ in e) or case["max_generation"] == 2
    for s in (edge, svc):
        s.delete([1000, 1001])
        s.delete_newer_than(1)
        assert s.count() == 58
    assert other.count() == 30  # deleting in one tenant never touches another's points


def test_service_store_never_returns_another_tenants_points(stores):
    _, a, b = stores
    rng = np.random.default_rng(1)
    a.upsert([VecPoint(i, rng.normal(size=8), "main", "a.py", 1) for i in range(20)])
    b.upsert([VecPoint(100 + i, rng.normal(size=8), "main", "b.py", 1) for i in range(20)])
    for q in rng.normal(size=(20, 8)):
        assert all(i < 100 for i, _ in a.search(q, 50, max_generation=5))
        assert all(i >= 100 for i, _ in b.search(q, 50, max_generation=5))
    b.drop()
    assert a.count() == 20 and b.count() == 0


def test_existing_ids_per_store_and_tenant(stores):
    edge, a, b = stores
    rng = np.random.default_rng(2)
    for s in (edge, a):
        assert s.existing([1, 2]) == set()          # nothing stored yet
        s.upsert([VecPoint(i, rng.normal(size=8), "main", "a.py", 1) for i in (1, 2, 3)])
        assert s.existing([2, 3, 4]) == {2, 3}
    assert b.existing([1, 2, 3]) == set()           # another tenant's equal ids are not its points


def test_a_store_refuses_vectors_of_another_width_and_keeps_its_points(stores, tmp_path):
    """Encoders differ in width (the static encoder's PCA): a store never takes two widths."""
    from retrieval.vectors import VectorDimensionMismatch

    edge, svc, _ = stores
    rng = np.random.default_rng(2)
    for s in (edge, svc):
        s.upsert(_points(rng, 5, 1))
        with pytest.raises(VectorDimensionMismatch, match="8-dimensional vectors, not 4"):
            s.upsert([VecPoint(1, rng.normal(size=4), "main", "a.py", 1)])
        assert s.count() == 5
    narrow = ServiceStore(":memory:", f"c{tmp_path.name}", Home(tmp_path / "home").tenant("gamma"), 4, exact=True)
    for call in (lambda: narrow.upsert([VecPoint(1, rng.normal(size=4), "main", "a.py", 1)]),
                 lambda: narrow.search(rng.normal(size=4), 3, max_generation=1)):
        with pytest.raises(VectorDimensionMismatch, match="holds 8-dimensional vectors; this index's encoder makes 4"):
            call()
    assert svc.count() == 5 and narrow.count() == 0
