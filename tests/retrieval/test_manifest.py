"""The index manifest is a typed artifact: today's files migrate, newer ones are refused."""

import json

import pytest

from codetailor.artifacts import ArtifactError, IndexManifest
from retrieval import index_source, search
from retrieval.segments import indexed_files, manifest_path, read_manifest


def test_unversioned_manifest_migrates_and_keeps_working(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, sample_repo.root)
    m = json.loads(manifest_path(paths).read_text())
    # the shape written before the manifest was versioned
    old = {k: v for k, v in m.items() if k not in ("schema_version", "pending_ids")} | {"format": 1}
    for files in old["files"].values():
        for f in files.values():
            f.pop("bytes")
    manifest_path(paths).write_text(json.dumps(old))
    migrated = read_manifest(paths)
    assert migrated["schema_version"] == IndexManifest.SCHEMA_VERSION and migrated["pending_ids"] == []
    assert "format" not in migrated
    assert search(settings, paths, "InvoiceLedger", mode="hybrid", top_k=1)[0].path == "app/main.py"
    assert sorted(indexed_files(paths)) == sorted(
        ("main", p, f["content_sha"]) for p, f in m["files"]["main"].items())
    again = index_source(settings, paths, sample_repo.root)
    assert again["chunks_embedded"] == 0 and again["generation"] == s["generation"]


def test_newer_manifest_is_refused(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root, embed=False)
    m = json.loads(manifest_path(paths).read_text())
    manifest_path(paths).write_text(json.dumps(m | {"schema_version": IndexManifest.SCHEMA_VERSION + 1}))
    with pytest.raises(ArtifactError, match="newer codetailor"):
        read_manifest(paths)


def test_manifest_file_is_owner_only(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root, embed=False)
    assert manifest_path(paths).stat().st_mode & 0o777 == 0o600
