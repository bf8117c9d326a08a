"""The console commands of sync: `source`, `credential`, `refresh` (--json, one-line errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(home, *args):
    env = {**os.environ, "CODETAILOR_HOME": str(home), "CODETAILOR_RETRIEVAL__EXACT_VECTORS": "true"}
    env.pop("CODETAILOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "codetailor", *args], capture_output=True, text=True, env=env)


def test_source_and_credential_commands(tmp_path, upstream, server):
    home = tmp_path / "home"
    assert run(home, "tenant", "create", "acme").returncode == 0
    token = tmp_path / "token"
    token.write_text(server.token + "\n")
    r = run(home, "credential", "add", "gh", "--token-file", str(token), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"credential": "gh", "kind": "token", "tenant": None}
    r = run(home, "credential", "add", "acme-gh", "--token-file", str(token), "--tenant", "acme", "--json")
    assert json.loads(r.stdout) == {"credential": "acme-gh", "kind": "token", "tenant": "acme"}
    r = run(home, "credential", "add", "ghost-gh", "--token-file", str(token), "--tenant", "ghost")
    assert r.returncode == 3 and "ghost" in r.stderr
    r = run(home, "credential", "list", "--json")
    assert [(c["credential"], c["tenant"]) for c in json.loads(r.stdout)] == [("acme-gh", "acme"), ("gh", None)]
    assert server.token not in r.stdout
    assert run(home, "credential", "remove", "acme-gh").returncode == 0

    upstream.work.commit({"a.py": "def a():\n    return 1\n"}, "one")
    upstream.push()
    r = run(home, "source", "add", "--tenant", "acme", "app", server.url("acme.git"), "--credential", "gh",
            "--max-bug-fixes", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert "full history" in json.loads(r.stdout)["history"]
    r = run(home, "source", "add", "--tenant", "acme", "bad", f"http://x:{server.token}@127.0.0.1/a.git")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and server.token not in r.stderr
    assert "never go into a URL" in r.stderr
    r = run(home, "source", "add", "--tenant", "acme", "nope", str(tmp_path / "missing"))
    assert r.returncode != 0 and r.stderr.startswith("codetailor: error:")

    r = run(home, "refresh", "--tenant", "acme", "--index-only", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sources"][0]["status"] == "updated" and out["retrain"]["decision"] is None
    rows = json.loads(run(home, "source", "list", "--tenant", "acme", "--json").stdout)
    assert rows[0]["source"] == "app" and rows[0]["last_commit"] == out["sources"][0]["commit"]
    assert rows[0]["last_error"] is None and rows[0]["last_refresh"]
    text = run(home, "source", "list", "--tenant", "acme").stdout
    assert text.startswith("app\t") and server.token not in text

    assert run(home, "source", "remove", "--tenant", "acme", "app").returncode == 0
    r = run(home, "refresh", "--tenant", "acme")
    assert r.returncode == 3 and "no sources connected by URL" in r.stderr
    assert run(home, "credential", "remove", "gh").returncode == 0
    assert json.loads(run(home, "credential", "list", "--json").stdout) == []


def test_serve_refuses_a_negative_refresh_interval(tmp_path):
    r = run(tmp_path / "home", "serve", "--refresh-interval", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "codetailor: error: --refresh-interval must be >= 0"
