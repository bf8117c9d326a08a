"""Removing a source drops its rows from BM25, the vectors and the symbol table, without a rebuild."""

from __future__ import annotations

import pytest

from tests.retrieval.gitrepo import GitRepo

BILLING = "def reconcile_ledger_entries(ledger):\n    return sorted(ledger, key=lambda e: e.amount)\n"
SHIPPING = "def compute_parcel_freight(weight):\n    return weight * 4.5\n"


@pytest.fixture(autouse=True)
def _close_shards():
    yield
    from retrieval.vectors import close_edge_shards

    close_edge_shards()


@pytest.fixture
def two_sources(tmp_path, settings, tenant):
    """Tenant acme with sources `billing` and `shipping` (file:// URLs), both refreshed."""
    from codetailor.refresh import refresh_tenant
    from codetailor.sources import sources_from_settings

    sources = sources_from_settings(settings)
    for name, text in (("billing", BILLING), ("shipping", SHIPPING)):
        repo = GitRepo(tmp_path / name)
        repo.commit({f"{name}/core.py": text}, "initial")
        sources.add("acme", name, f"file://{repo.root}")
    refresh_tenant(settings, tenant, index_only=True, progress=False)
    return sources


def _paths(settings, tenant, query, mode):
    from retrieval import search

    return {h.path for h in search(settings, tenant, query, mode=mode, top_k=10)}


def _symbol_names(tenant):
    from retrieval.symbol_table import open_table

    table = open_table(tenant)
    return {d.name for name in ("reconcile_ledger_entries", "compute_parcel_freight") for d in table.named(name)}


def _source_ids(tenant, source):
    from retrieval.segments import read_manifest

    return [i for f in read_manifest(tenant)["files"].get(source, {}).values() for i in f["ids"]]


def _vectors_left(settings, tenant, ids):
    from retrieval.segments import read_manifest
    from retrieval.vectors import open_store

    return open_store(settings, tenant, read_manifest(tenant)["dim"]).existing(ids)


def test_remove_drops_the_sources_rows_and_keeps_the_others(settings, tenant, two_sources):
    from codetailor.refresh import refresh_tenant
    from retrieval.segments import read_manifest

    billing_ids = _source_ids(tenant, "billing")
    assert billing_ids and _vectors_left(settings, tenant, billing_ids) == set(billing_ids)
    assert _symbol_names(tenant) == {"reconcile_ledger_entries", "compute_parcel_freight"}
    gen = read_manifest(tenant)["generation"]

    out = two_sources.remove("acme", "billing")
    assert out["index"]["dropped"] and out["index"]["files_removed"] == 1

    manifest = read_manifest(tenant)
    assert manifest["generation"] == gen + 1
    assert set(manifest["files"]) == set(manifest["sources"]) == {"shipping"}
    for mode in ("bm25", "hybrid", "semantic"):
        assert _paths(settings, tenant, "reconcile ledger entries", mode) <= {"shipping/core.py"}
        assert "shipping/core.py" in _paths(settings, tenant, "compute parcel freight weight", mode)
    assert _vectors_left(settings, tenant, billing_ids) == set()
    assert _symbol_names(tenant) == {"compute_parcel_freight"}

    summary = refresh_tenant(settings, tenant, index_only=True, progress=False)   # nothing comes back
    assert [s["source"] for s in summary["sources"]] == ["shipping"] and "dropped_sources" not in summary
    assert set(read_manifest(tenant)["files"]) == {"shipping"}
    assert _paths(settings, tenant, "reconcile ledger entries", "bm25") <= {"shipping/core.py"}


def test_a_removal_that_finds_the_index_busy_is_finished_by_the_next_refresh(settings, tenant, two_sources):
    from codetailor.refresh import refresh_tenant
    from codetailor.tenants import registry_from_settings
    from retrieval.ingest import _tenant_lock
    from retrieval.segments import read_manifest

    billing_ids = _source_ids(tenant, "billing")
    with _tenant_lock(tenant):            # an index run in another process holds the index
        out = two_sources.remove("acme", "billing")
    assert not out["index"]["dropped"] and "next refresh" in out["index"]["reason"]
    assert "billing" in read_manifest(tenant)["files"]
    assert registry_from_settings(settings).sources_to_drop(tenant.tenant) == ["billing"]

    summary = refresh_tenant(settings, tenant, index_only=True, progress=False)
    assert summary["dropped_sources"] == ["billing"]
    assert set(read_manifest(tenant)["files"]) == {"shipping"}
    assert _vectors_left(settings, tenant, billing_ids) == set()
    assert _symbol_names(tenant) == {"compute_parcel_freight"}
    assert registry_from_settings(settings).sources_to_drop(tenant.tenant) == []
    assert "dropped_sources" not in refresh_tenant(settings, tenant, index_only=True, progress=False)


def test_removing_the_only_source_leaves_an_empty_searchable_index(settings, tenant, two_sources):
    from retrieval.segments import read_manifest

    two_sources.remove("acme", "billing")
    two_sources.remove("acme", "shipping")
    manifest = read_manifest(tenant)
    assert manifest["files"] == {} and manifest["segments"] == []
    assert _paths(settings, tenant, "compute parcel freight", "bm25") == set()
