"""Pathological sources finish or skip with a reason, never hang (a tenth of the scale the product
is sized for: 100k tiny files, a 50 MB generated file, deep trees, 1M-character lines)."""

import pytest

from retrieval import index_source, search
from retrieval.selection import MAX_DEPTH, Selection, select_files
from tests.retrieval.gitrepo import GitRepo


@pytest.mark.timeout(240)
def test_ten_thousand_tiny_files(settings, registry, tmp_path):
    root = tmp_path / "tiny"
    for d in range(100):
        sub = root / f"pkg{d:03d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"m{f:03d}.py").write_text(f"def f_{d}_{f}(x):\n    return x + {f}\n")
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, root, embed=False)
    assert s["files_indexed"] == 10_000 and s["vectors_pending"] == s["chunks"] == 10_000
    assert search(settings, paths, "f_42_7", mode="bm25", top_k=1)[0].path == "pkg042/m007.py"


@pytest.mark.timeout(60)
def test_huge_generated_file_is_skipped(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "schema_pb2.py").write_text("X = 1\n" * 900_000)   # 5.4 MB
    (root / "real.py").write_text("def real():\n    return 1\n")
    r = select_files(root, Selection(), __import__("codetailor.config").config.RetrievalConfig())
    assert [f.path for f in r.files] == ["real.py"] and r.skipped == {"too_large": 1}


@pytest.mark.timeout(60)
def test_deep_directories_plain_and_git(tmp_path):
    from codetailor.config import RetrievalConfig

    for kind in ("plain", "git"):
        root = tmp_path / kind
        deep = root.joinpath(*(["d"] * (MAX_DEPTH + 36)))
        deep.mkdir(parents=True)
        (deep / "deep.py").write_text("def deep():\n    return 1\n")
        (root / "top.py").write_text("def top():\n    return 1\n")
        if kind == "git":
            repo = GitRepo(root)
            repo.commit({}, "init")
        r = select_files(root, Selection(), RetrievalConfig())
        assert [f.path for f in r.files] == ["top.py"] and r.skipped["too_deep"] == 1, kind


@pytest.mark.timeout(60)
def test_long_lines(settings, registry, tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "one_line.js").write_text("var a=" + "1+" * 50_000 + "1;\n")   # 100k characters, one line
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(2000))
    (root / "mixed.py").write_text(body + "BLOB = '" + "ab" * 50_000 + "'\n")
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, root, embed=False)
    assert s["skipped"] == {"minified": 1} and s["files_indexed"] == 1
    assert search(settings, paths, "f1234", mode="bm25", top_k=1)[0].path == "mixed.py"
