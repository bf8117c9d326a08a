"""Evaluation before any training holds out exactly the files the first training run holds out."""

from __future__ import annotations

import pytest

from codetailor.home import Home
from codetailor.tenants import Registry
from evaluation import data as eval_data
from tests.evaluation.helpers import fake_model_dir, settings_with, tenant
from training.run import split_tenant_files

CODE = "def f{i}(x):\n    y = x + {i}\n    return y * 2\n"


def _repo(root, names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(CODE.format(i=len(name)))
    return root


@pytest.mark.parametrize("layout", [
    {"main": [f"pkg/m{i}.py" for i in range(30)]},
    # two sources, one path in both (the first source in name order keeps it)
    {"api": [f"api/h{i}.py" for i in range(15)] + ["common/util.py"],
     "web": [f"web/v{i}.py" for i in range(15)] + ["common/util.py"]},
])
def test_seeded_evaluation_split_is_the_first_training_split(tmp_path, layout):
    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path))
    paths = tenant(settings)
    registry = Registry(Home(settings.home), pepper="test")
    for name, files in layout.items():
        registry.add_source(paths.tenant, name, str(_repo(tmp_path / name, files)))
    before = eval_data.load(settings, paths, None, None)
    first = split_tenant_files(settings, paths)
    assert before.split["source"] == "seeded"
    assert before.heldout == sorted(first.split.heldout)
    assert sorted(before.files) == sorted(f.path for f in first.train + first.heldout)


def test_files_changed_since_indexing_are_counted_not_used(tmp_path, monkeypatch):
    """Evaluation reads through the index: a file edited after indexing is left out and counted."""
    import retrieval.files as rfiles
    from retrieval import index_source
    from retrieval.vectors import close_edge_shards

    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path))
    paths = tenant(settings)
    root = _repo(tmp_path / "main", [f"pkg/m{i}.py" for i in range(12)])
    try:
        index_source(settings, paths, root)
    finally:
        close_edge_shards()
    (root / "pkg/m3.py").write_text("def changed():\n    return 0\n")
    monkeypatch.setattr(rfiles, "select_files", lambda *a, **k: pytest.fail("selected again"))
    data = eval_data.load(settings, paths, None, None)
    first = split_tenant_files(settings, paths)
    assert "pkg/m3.py" not in data.files and len(data.files) == 11
    assert data.split["skipped_since_index"] == {"changed": 1} == first.skipped
    assert data.heldout == sorted(first.split.heldout)
