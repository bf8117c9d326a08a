"""The per-file work of a large source runs on worker processes; the index must not depend on it."""

import json
import sqlite3
from pathlib import Path

from retrieval import index_source
from retrieval import scan_pool
from retrieval.scan_pool import ordered_map
from retrieval.segments import read_manifest, segments_dir
from retrieval.symbol_table import table_path
from tests.retrieval.conftest import GO, JAVA, PY_MAIN


def _tree(root: Path) -> None:
    files = {"app/main.py": PY_MAIN, "src/PaymentGateway.java": JAVA, "ship/freight.go": GO,
             "leak.py": 'db_password = "correct-horse-battery-staple-42"\n',
             "blob.c": "int x;\0\n", "empty.h": "\n\n", "vendor/lib.c": "int vendored(void) { return 1; }\n"}
    for i in range(40):
        body = "".join(f"static int f{i}_{j}(int a) {{\n\treturn a * {j};\n}}\n\n" for j in range(12))
        files[f"drivers/d{i:02d}.c"] = f"/* driver {i} */\n#include <linux/kernel.h>\n\n" + body
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _snapshot(paths) -> dict:
    """Every byte the index wrote (segments, manifest without its clock, symbol rows)."""
    seg = segments_dir(paths)
    out = {str(p.relative_to(seg)): p.read_bytes() for p in sorted(seg.rglob("*")) if p.is_file()}
    manifest = read_manifest(paths)
    manifest.pop("updated_at")
    out["manifest"] = json.dumps(manifest, sort_keys=True)
    con = sqlite3.connect(table_path(paths))
    out["symbols"] = [con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("files", "defs", "imports")]
    con.close()
    return out


def _index(settings, registry, name, root, workers):
    from codetailor.config import load_settings

    s = load_settings(home=settings.home, retrieval={"exact_vectors": True, "secret_scan_workers": workers,
                                                    "max_segment_rows": 150})
    paths = registry.tenant(name)
    return paths, index_source(s, paths, root, embed=False)


def test_worker_processes_write_the_same_index_as_one_process(settings, registry, tmp_path, monkeypatch):
    root = tmp_path / "src"
    _tree(root)
    pooled = []

    def small_batches(fn, context, items, **kw):   # a pool even for this small tree, many batches
        pooled.append(kw["workers"])
        return ordered_map(fn, context, items, **(kw | {"min_items": 1, "batch": 3}))

    monkeypatch.setattr("retrieval.selection.ordered_map", small_batches)
    registry.create_tenant("serial")
    registry.create_tenant("pooled")
    serial_paths, serial = _index(settings, registry, "serial", root, 1)
    pooled_paths, parallel = _index(settings, registry, "pooled", root, 2)
    assert pooled == [1, 2]
    assert serial["skipped"] == parallel["skipped"] == {"binary": 1, "empty": 1, "secret": 1, "vendored": 1}
    assert len(read_manifest(serial_paths)["segments"]) > 1   # several segments, rows in file order
    drop = ("seconds", "searchable_seconds", "tenant")
    assert {k: v for k, v in serial.items() if k not in drop} == {k: v for k, v in parallel.items() if k not in drop}
    assert _snapshot(serial_paths) == _snapshot(pooled_paths)

    # an incremental re-index: unchanged files are not re-chunked, changed ones are, the same either way
    (root / "drivers/d07.c").write_text("int changed(void) { return 7; }\n")
    (root / "drivers/d08.c").unlink()
    _, serial2 = _index(settings, registry, "serial", root, 1)
    _, parallel2 = _index(settings, registry, "pooled", root, 2)
    assert serial2["files_changed"] == parallel2["files_changed"] == 1
    assert _snapshot(serial_paths) == _snapshot(pooled_paths)


def _square(context, item):
    return context * item * item


def test_ordered_map_keeps_order_and_bounds_what_is_in_flight():
    assert list(ordered_map(_square, 2, range(10), workers=1)) == [2 * i * i for i in range(10)]
    consumed = []

    def items():
        for i in range(200):
            consumed.append(i)
            yield i

    out = ordered_map(_square, 3, items(), workers=2, batch=5, min_items=10, ahead=2)
    assert [next(out) for _ in range(3)] == [0, 3, 12]
    assert len(consumed) <= 10 + 5 * 2   # the head, then at most `ahead` batches beyond what was handed back
    assert list(out) == [3 * i * i for i in range(3, 200)]
    assert scan_pool._work is None   # the context lives in the workers, not here


def _row(i: int, path: str = "a.py") -> dict:
    return {"id": i, "source": "main", "path": path, "language": "python", "start_line": 1, "end_line": 1,
            "symbol": None, "deprecated": False, "text": f"def f{i}(): return {i}\n"}


def test_segments_written_in_the_background_are_in_place_and_in_order(tmp_path):
    from retrieval.segments import SegmentWriter, iter_rows

    w = SegmentWriter(tmp_path, "g000001", cap=4)
    placed = [w.add_file([_row(3 * f + k, f"f{f}.py") for k in range(3)]) for f in range(5)]
    w.finish()
    assert [name for name, _ in w.written] == [f"g000001-{i:04d}" for i in range(5)]
    assert [p[0] for p in placed] == [name for name, _ in w.written]
    for (name, n), f in zip(w.written, range(5)):
        assert [r["id"] for r in iter_rows(tmp_path / name)] == [3 * f + k for k in range(3)]
        assert (tmp_path / name / "bm25").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_failed_background_write_is_raised_and_its_segments_listed(tmp_path, monkeypatch):
    import pytest

    from retrieval import segments

    def broken(target, rows, tokens=None):
        raise OSError("disk full")

    monkeypatch.setattr(segments, "write_segment", broken)
    w = segments.SegmentWriter(tmp_path, "g000002", cap=2)
    w.add_file([_row(1), _row(2)])
    w.add_file([_row(3)])          # starts the first write, which fails in the background
    with pytest.raises(OSError, match="disk full"):
        w.finish()
    assert w.abandon() == ["g000002-0000"]   # the failure stopped the writer before the next segment
    assert not list(tmp_path.iterdir())   # nothing half-written stays


def test_a_quota_stop_with_worker_processes_leaves_nothing_behind(settings, registry, tmp_path, monkeypatch):
    import pytest

    from codetailor.config import load_settings
    from codetailor.errors import QuotaExceeded

    root = tmp_path / "src"
    _tree(root)
    monkeypatch.setattr("retrieval.selection.ordered_map",
                        lambda fn, context, items, **kw: ordered_map(fn, context, items,
                                                                     **(kw | {"min_items": 1, "batch": 2})))
    s = load_settings(home=settings.home, retrieval={"exact_vectors": True, "secret_scan_workers": 2,
                                                    "max_segment_rows": 20, "max_tenant_files": 30})
    paths, _ = registry.create_tenant("capped")
    with pytest.raises(QuotaExceeded):
        index_source(s, paths, root, embed=False)
    assert read_manifest(paths) is None
    seg = segments_dir(paths)
    assert not seg.exists() or not list(seg.iterdir())   # segments written before the stop were removed
