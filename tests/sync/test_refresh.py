"""`codetailor refresh` over real git: pushes between refreshes, failures, the retraining decision."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PY = "def total(items):\n    return sum(i.amount for i in items)\n"


def _files(paths, source="app"):
    from retrieval.segments import read_manifest

    return sorted((read_manifest(paths) or {"files": {}})["files"].get(source, {}))


def _generation(paths):
    from retrieval.segments import read_manifest

    return read_manifest(paths)["generation"]


@pytest.fixture
def connected(tmp_path, settings, tenant, server, upstream):
    """Tenant acme with source `app` on the token-protected http server."""
    from codetailor.sources import sources_from_settings

    upstream.work.commit({"app/ledger.py": PY, "app/util.py": "def one():\n    return 1\n"}, "initial")
    upstream.push()
    token = tmp_path / "token"
    token.write_text(server.token)
    sources = sources_from_settings(settings)
    sources.credentials.add_token("gh", token)
    sources.add("acme", "app", server.url("acme.git"), branch="main", credential="gh")
    return sources


def _refresh(settings, tenant, **kw):
    from codetailor.refresh import refresh_tenant

    return refresh_tenant(settings, tenant, index_only=True, progress=False, **kw)


def test_pushes_between_refreshes(settings, tenant, upstream, connected):
    r = _refresh(settings, tenant)
    assert r["sources"][0]["status"] == "updated" and _files(tenant) == ["app/ledger.py", "app/util.py"]

    upstream.work.commit({"app/new.py": "def two():\n    return 2\n", "app/util.py": "def one():\n    return 11\n"},
                         "add and modify")
    upstream.push()
    r = _refresh(settings, tenant)["sources"][0]
    assert r["index"]["files_changed"] == 2 and _files(tenant) == ["app/ledger.py", "app/new.py", "app/util.py"]

    upstream.git("rm", "-q", "app/new.py")
    upstream.git("mv", "app/util.py", "app/helpers.py")
    upstream.git("commit", "-qm", "delete and rename")
    upstream.push()
    r = _refresh(settings, tenant)["sources"][0]
    assert _files(tenant) == ["app/helpers.py", "app/ledger.py"] and r["index"]["files_removed"] == 2

    upstream.git("reset", "-q", "--hard", "HEAD~2")          # history rewritten upstream
    head = upstream.push(force=True)
    r = _refresh(settings, tenant)["sources"][0]
    assert r["commit"] == head and _files(tenant) == ["app/ledger.py", "app/util.py"]

    upstream.git("checkout", "-q", "-b", "release")
    upstream.work.commit({"app/release.py": "VERSION = '2.0'\n"}, "release branch")
    upstream.push(branch="release")
    connected.registry.add_source(tenant.tenant, "app", str(tenant.source_clone("app")), branch="release")
    r = _refresh(settings, tenant)["sources"][0]
    assert r["branch"] == "release" and "app/release.py" in _files(tenant)

    gen = _generation(tenant)
    r = _refresh(settings, tenant)["sources"][0]
    assert r["status"] == "unchanged" and _generation(tenant) == gen


def test_wrong_token_keeps_the_previous_index_and_never_shows_the_token(tmp_path, settings, tenant, server,
                                                                       upstream, connected):
    from codetailor.errors import outcome
    from codetailor.refresh import RefreshFailed
    from retrieval import search

    _refresh(settings, tenant)
    gen = _generation(tenant)
    upstream.work.commit({"app/more.py": "def three():\n    return 3\n"}, "more")
    upstream.push()
    server.token = "ghp_rotated" + server.token[11:]       # the host revoked the stored token
    with pytest.raises(RefreshFailed) as e:
        _refresh(settings, tenant)
    assert "authentication failed" in str(e.value) and "credential 'gh'" in str(e.value)
    assert _generation(tenant) == gen and search(settings, tenant, "total amount", mode="bm25")
    row = connected.list("acme")[0]
    assert "authentication failed" in row["last_error"] and row["last_commit"]

    stored = connected.credentials.secret("gh")
    home = settings.home
    leaks = [p for p in home.rglob("*") if p.is_file() and "credentials" not in p.parts
             and stored.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert stored not in str(e.value) and stored not in json.dumps(e.value.summary)
    # and through the console command: neither stdout nor stderr carries it
    env = {**os.environ, "CODETAILOR_HOME": str(home), "CODETAILOR_RETRIEVAL__EXACT_VECTORS": "true"}
    env.pop("CODETAILOR_CONFIG", None)
    cli = subprocess.run([sys.executable, "-m", "codetailor", "refresh", "--tenant", "acme", "--index-only", "--json"],
                         capture_output=True, text=True, env=env)
    assert cli.returncode == outcome(RefreshFailed).exit_code and stored not in cli.stdout + cli.stderr
    assert cli.stderr.strip().splitlines()[-1].startswith("codetailor: error: 1 of 1 sources failed")
    assert json.loads(cli.stdout)["sources"][0]["status"] == "failed"


def test_no_change_refresh_loads_nothing_heavy(settings, tenant, connected):
    _refresh(settings, tenant)
    code = ("import sys; from codetailor.cli import main; rc = main(['refresh', '--tenant', 'acme', '--json', "
            "'--index-only']); heavy = sorted(m for m in ('torch', 'sentence_transformers', 'bm25s', 'transformers') "
            "if m in sys.modules); print(heavy, file=sys.stderr); sys.exit(rc or (3 if heavy else 0))")
    env = {**os.environ, "CODETAILOR_HOME": str(settings.home)}
    env.pop("CODETAILOR_CONFIG", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sources"][0]["status"] == "unchanged"
    assert "refresh acme: app: asking" in r.stderr          # progress goes to stderr


class _Calls:
    def __init__(self, monkeypatch, fail_at=None):
        import evaluation
        import evaluation.guardrail
        import training

        self.log, self.fail_at, self.warm_starts = [], fail_at, []

        def train(settings, paths, opts):
            from codetailor.adapters import AdapterStore
            from training import TrainingError

            self.log.append("train")
            self.warm_starts.append(opts.warm_start)
            if self.fail_at == "train":
                raise KeyboardInterrupt
            if self.fail_at == "refuse":
                raise TrainingError("tenant 'acme' has only one selected file")
            from codetailor.artifacts import AdapterMeta

            with AdapterStore(paths).new_version() as staged:
                staged.meta = AdapterMeta(hyper_parameters={"rank": opts.rank, "alpha": opts.alpha})
            return {"adapter_version": staged.version, "train_tokens": 1, "epochs": 1, "seconds": 0}

        def evaluate(settings, paths, adapter=None, n=None, progress=True, **kw):
            self.log.append(f"eval {adapter}")
            if self.fail_at == "eval":
                raise KeyboardInterrupt
            return {"cqi": {"ft": {"value": 7.0}}, "n": n}

        def activate(settings, paths, version):
            from codetailor.adapters import AdapterStore

            self.log.append(f"activate {version}")
            return AdapterStore(paths).set_active(version)

        monkeypatch.setattr(training, "train_tenant", train)
        monkeypatch.setattr(evaluation, "evaluate", evaluate)
        monkeypatch.setattr(evaluation, "public_summary", lambda r: r)
        monkeypatch.setattr(evaluation.guardrail, "activate", activate)


def test_retrain_decision_and_resume_after_a_kill(monkeypatch, settings, tenant, upstream, connected):
    from codetailor.config import load_settings
    from codetailor.refresh import refresh_tenant

    settings = load_settings(home=settings.home, retrieval={"exact_vectors": True},
                             sync={"retrain_min_changed_tokens": 10})
    calls = _Calls(monkeypatch, fail_at="eval")
    with pytest.raises(KeyboardInterrupt):                       # killed while evaluating v0001
        refresh_tenant(settings, tenant, progress=False)
    calls.fail_at = None
    r = refresh_tenant(settings, tenant, progress=False)        # resumes at eval: no second training
    assert calls.log == ["train", "eval v0001", "eval v0001", "activate v0001"]
    assert r["retrain"]["decision"] == "activated v0001" and "resuming" in r["retrain"]["reason"]

    r = refresh_tenant(settings, tenant, progress=False)        # idempotent: nothing changed
    assert r["retrain"]["decision"] is None and len(calls.log) == 4

    upstream.work.commit({"app/tiny.py": "X = 1\n"}, "small change")
    upstream.push()
    r = refresh_tenant(settings, tenant, progress=False)
    assert r["retrain"]["changed_tokens"] < 10 and "below the threshold" in r["retrain"]["reason"]
    upstream.work.commit({"app/big.py": "def f(x):\n    return x * 2\n" * 30}, "big change")
    upstream.push()
    r = refresh_tenant(settings, tenant, progress=False, index_only=True)
    assert "--index-only" in r["retrain"]["reason"] and len(calls.log) == 4
    calls.fail_at = "train"
    with pytest.raises(KeyboardInterrupt):                       # killed while training
        refresh_tenant(settings, tenant, progress=False)
    calls.fail_at = None
    r = refresh_tenant(settings, tenant, progress=False)
    assert calls.log[4:] == ["train", "train", "eval v0002", "activate v0002"]
    assert calls.warm_starts == [None, "v0001", "v0001"]      # later versions continue the active one
    # the small change below the threshold counted too: both commits are now trained
    assert refresh_tenant(settings, tenant, progress=False)["retrain"]["decision"] is None

    # training refusing (bad input, not a kill): a clear failure, no step left to resume
    from codetailor.artifacts import RefreshState
    from codetailor.refresh import RefreshFailed

    upstream.work.commit({"app/more.py": "def g(y):\n    return y + 1\n" * 30}, "more")
    upstream.push()
    calls.fail_at = "refuse"
    with pytest.raises(RefreshFailed, match="retraining failed at its train step: .*one selected file") as e:
        refresh_tenant(settings, tenant, progress=False)
    assert e.value.summary["sources"][0]["status"] == "updated"
    assert RefreshState.read(tenant.refresh_state).phase == "idle"


def test_serve_refresher_follows_pushes_in_the_background(settings, tenant, upstream, connected):
    import time

    from codetailor.refresh import Refresher, tenants_with_sources

    assert [p.tenant for p in tenants_with_sources(settings)] == ["acme"]
    lines = []
    refresher = Refresher(settings, 0.2, log=lines.append).start()
    try:
        deadline = time.time() + 300   # a loaded machine: the first refresh loads the embedder
        while "app/ledger.py" not in _files(tenant) and time.time() < deadline:
            time.sleep(0.2)
        upstream.work.commit({"app/late.py": "def late():\n    return 9\n"}, "late")
        upstream.push()
        while "app/late.py" not in _files(tenant) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        refresher.stop()
    assert "app/late.py" in _files(tenant)
    assert any("re-indexed app" in line for line in lines)


def test_one_refresh_per_tenant_at_a_time(settings, tenant, connected):
    from codetailor.refresh import RefreshBusy, refresh_lock

    with refresh_lock(tenant):
        with pytest.raises(RefreshBusy, match="being refreshed by another process"):
            _refresh(settings, tenant)
