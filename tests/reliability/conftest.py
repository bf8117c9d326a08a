"""The reliability tests share the session's one serving stack (tests/fixtures/serving.py)
and add a many-tenant world to its home once per session."""

from __future__ import annotations

import pytest

N_TENANTS = 22


@pytest.fixture(scope="session")
def world(serving_stack, tmp_path_factory):
    from tests.reliability.world import build_world

    from retrieval.vectors import close_edge_shards

    w = build_world(serving_stack.settings, serving_stack.base_model, tmp_path_factory.mktemp("iso-repos"), N_TENANTS)
    close_edge_shards()  # an embedded shard serves one process: leave them to the serving ingress
    return w


@pytest.fixture(scope="session")
def local_ingress(serving_stack):
    """An Ingress object in the test process, sharing the stack's real model deployment:
    lets a test read the exact prompt a request gets, or run with other settings."""
    from serving.ingress import Ingress

    s = serving_stack.settings
    # A vector service with nothing in it: the edge shards belong to the serving ingress
    # (one process each), so this ingress's hybrid search is BM25 plus an empty vector list.
    settings = s.model_copy(update={"retrieval": s.retrieval.model_copy(
        update={"vector_store": "service", "qdrant_url": ":memory:", "qdrant_collection": "local_ingress"})})
    return Ingress(settings, serving_stack.stack.model, str(serving_stack.base_model))
