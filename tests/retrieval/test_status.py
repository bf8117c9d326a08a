"""`codetailor status`: the published index per source and overall, without loading anything heavy."""

import json
import os
import subprocess
import sys
from pathlib import Path

from codetailor.cli import main
from retrieval import index_source
from retrieval.symbol_table import open_table
from tests.retrieval.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_per_source_and_overall(settings, registry, sample_repo, tmp_path, capsys):
    paths, _ = registry.create_tenant("acme")
    code, out, _ = _cli(capsys, "status", "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["index"]["indexed"] is False
    main_summary = index_source(settings, paths, sample_repo.root, source="main")
    lib = GitRepo(tmp_path / "lib")
    lib.commit({"lib/money.py": "def cents(x):\n    return int(x * 100)\n\n\nclass Wallet:\n    pass\n"}, "init")
    lib_summary = index_source(settings, paths, lib.root, source="lib", embed=False)

    code, out, err = _cli(capsys, "status", "--tenant", "acme", "--json")
    assert code == 0, err
    st = json.loads(out)
    ix = st["index"]
    assert ix["generation"] == lib_summary["generation"] == 2
    main_row, lib_row = ix["sources"]["main"], ix["sources"]["lib"]
    assert main_row["files_indexed"] == main_summary["files_indexed"] == 3
    assert main_row["chunks"] == main_summary["chunks"] and main_row["vectors_pending"] == 0
    assert lib_row["chunks"] == lib_row["vectors_pending"] == lib_summary["vectors_pending"] > 0
    assert ix["vectors_pending"] == lib_summary["vectors_pending"]            # same key as index --json
    assert ix["chunks"] == main_row["chunks"] + lib_row["chunks"] == lib_summary["chunks"]
    assert ix["symbols"] == open_table(paths).count() == main_row["symbols"] + lib_row["symbols"]
    assert lib_row["symbols"] == 2 and main_row["location"] == str(sample_repo.root.resolve())
    assert st["adapter"] == {"active": None, "system": "rag"}
    assert st["refresh"]["last_refresh"] is None and st["refresh"]["phase"] == "idle"

    code, out, _ = _cli(capsys, "status", "--tenant", "acme")
    assert code == 0 and "generation 2" in out and f"{lib_row['chunks']} pending" in out


def test_status_shows_the_active_adapter(settings, registry, capsys):
    from codetailor.adapters import AdapterStore

    paths, _ = registry.create_tenant("acme")
    store = AdapterStore(paths)
    with store.new_version():
        pass
    store.set_active("v0001")
    code, out, _ = _cli(capsys, "status", "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["adapter"] == {"active": "v0001", "system": "ft+rag"}


def test_status_loads_nothing_heavy_and_refuses_an_unknown_tenant(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root, embed=False)
    code = ("import sys; from codetailor.cli import main; rc = main(['status', '--tenant', 'acme', '--json']); "
            "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'bm25s', 'transformers', 'qdrant_edge', "
            "'onnxruntime') if m in sys.modules); print(heavy, file=sys.stderr); sys.exit(rc or (3 if heavy else 0))")
    env = {**os.environ, "CODETAILOR_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    env.pop("CODETAILOR_CONFIG", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["index"]["vectors_pending"] > 0
    r = subprocess.run([sys.executable, "-m", "codetailor", "status", "--tenant", "nobody"],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "unknown tenant" in r.stderr


def test_status_shows_the_last_refresh(settings, registry, capsys):
    from codetailor.artifacts import RefreshState, SourceState
    from codetailor.sources import write_state

    paths, _ = registry.create_tenant("acme")
    registry.add_source(paths.tenant, "app", str(paths.source_clone("app")), url="https://git.example/acme.git")
    write_state(paths, SourceState(source="app", url="https://git.example/acme.git"), indexed_commit="c0ffee" * 6,
                refreshed_at=1_800_000_000.0, last_error="fetch failed: timed out")
    RefreshState(last_decision="not retraining: 12 changed training tokens, below the threshold 20000",
                 updated_at=1_800_000_001.0).write(paths.refresh_state)
    code, out, _ = _cli(capsys, "status", "--tenant", "acme", "--json")
    st = json.loads(out)
    app = st["index"]["sources"]["app"]
    assert code == 0 and app["last_refresh"] == st["refresh"]["last_refresh"] == 1_800_000_000.0
    assert app["indexed_commit"] == "c0ffee" * 6 and app["last_error"] == "fetch failed: timed out"
    assert app["chunks"] == 0 and st["refresh"]["last_decision"].startswith("not retraining")
    code, out, _ = _cli(capsys, "status", "--tenant", "acme")
    assert "refreshed 2027-01-15 08:00:00 UTC; error: fetch failed" in out
