"""Training and evaluation read the files the index selected, each re-checked against its hash."""

from __future__ import annotations

from collections import Counter

import pytest

import retrieval.files as rfiles
from retrieval import Selection, index_source, iter_selected_files
from retrieval.files import SourceGone, tenant_files
from retrieval.vectors import close_edge_shards


@pytest.fixture(autouse=True)
def _close_shards():
    yield
    close_edge_shards()


def _no_selection(*a, **k):
    raise AssertionError("selected again although the index already had the answer")


def test_indexed_files_are_what_selection_gave_without_selecting_again(settings, registry, sample_repo, monkeypatch):
    paths, _ = registry.create_tenant("acme")
    sel = Selection(exclude_deprecated=True)
    index_source(settings, paths, sample_repo.root, selection=sel)
    expected = {sf.path: (sf.text, tuple((c.start_line, c.end_line) for c in chunks))
                for sf, chunks in iter_selected_files(sample_repo.root, sel, settings.retrieval)}
    monkeypatch.setattr(rfiles, "select_files", _no_selection)
    got = {f.path: (f.text, f.preferred) for f in tenant_files(settings, paths)}
    assert got == expected
    java = got["src/PaymentGateway.java"]
    assert not any(a <= 9 <= b for a, b in java[1])   # the deprecated method's lines are not preferred


def test_changed_missing_and_linked_files_are_skipped_and_counted(settings, registry, sample_repo, monkeypatch):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    root = sample_repo.root
    (root / "app/main.py").write_text("API_KEY = 'sk-live-0123456789abcdef0123456789abcdef'\n")  # never scanned
    (root / "ship/freight.go").unlink()
    (root / "ship/freight.go").symlink_to(root / "src/PaymentGateway.java")
    monkeypatch.setattr(rfiles, "select_files", _no_selection)
    skipped: Counter = Counter()
    got = [f.path for f in tenant_files(settings, paths, skipped=skipped)]
    assert got == ["src/PaymentGateway.java"]
    assert skipped == {"changed": 1, "missing": 1}


def test_another_selection_or_an_unindexed_source_is_selected_now(settings, registry, sample_repo, tmp_path):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    only_go = Selection(include=("*.go",))
    assert [f.path for f in tenant_files(settings, paths, only_go)] == ["ship/freight.go"]
    other, _ = registry.create_tenant("beta")
    registry.add_source(other.tenant, "main", str(sample_repo.root))   # registered, never indexed
    assert sorted(f.path for f in tenant_files(settings, other)) == sorted(
        f.path for f in tenant_files(settings, paths))


def test_a_gone_source_is_a_clear_error(settings, registry, sample_repo):
    import shutil

    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    shutil.rmtree(sample_repo.root)
    with pytest.raises(SourceGone, match="no longer a directory"):
        list(tenant_files(settings, paths))
