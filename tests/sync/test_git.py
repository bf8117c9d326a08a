"""The hardened git runner: a repository's own config never runs a command."""

from __future__ import annotations

import subprocess

import pytest


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_repository_config_runs_no_command(tmp_path):
    from retrieval.git import run_git

    repo, markers = tmp_path / "repo", tmp_path / "markers"
    markers.mkdir()
    _git(tmp_path, "init", "-q", str(repo))
    (repo / "f.py").write_text("a = 1\n")
    (repo / ".gitattributes").write_text("*.py filter=evil diff=evil\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    planted = {"core.fsmonitor": "fsmonitor", "filter.evil.clean": "clean", "filter.evil.smudge": "smudge",
               "filter.evil.process": "process", "diff.evil.textconv": "textconv", "diff.external": "external",
               "core.pager": "pager", "core.sshCommand": "ssh", "core.askPass": "askpass",
               "credential.helper": "!credential"}
    for key, name in planted.items():
        _git(repo, "config", key, f"{name.lstrip('!')}() {{ :; }}; touch {markers}/{name.lstrip('!')}; cat")
    _git(repo, "config", "core.hooksPath", str(tmp_path / "hooks"))
    (tmp_path / "hooks").mkdir()
    for hook in ("post-checkout", "post-commit", "pre-commit"):
        (tmp_path / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {markers}/{hook}\n")
        (tmp_path / "hooks" / hook).chmod(0o755)
    (repo / "f.py").write_text("a = 2\n")

    assert run_git(repo, "status", "--porcelain", "--untracked-files=no").strip() == "M f.py"
    assert "+a = 2" in run_git(repo, "diff", "HEAD")
    assert "a = 1" in run_git(repo, "log", "-p", "-1")
    assert run_git(repo, "blame", "--", "f.py")
    run_git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qam", "two")
    run_git(repo, "checkout", "-q", "HEAD~1")
    assert sorted(p.name for p in markers.iterdir()) == []
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True)   # plain git obeys the repo...
    assert (markers / "fsmonitor").exists()                                    # ...so the test can fail


def test_missing_repository_is_a_one_line_error(tmp_path):
    from retrieval.git import GitError, run_git

    with pytest.raises(GitError, match="git rev-parse failed.*fatal: not a git repository"):
        run_git(tmp_path, "rev-parse", "HEAD")
