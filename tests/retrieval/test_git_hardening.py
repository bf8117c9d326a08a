"""A tenant's repository cannot make git run a program of its choosing (retrieval/git.py)."""

import os
import shutil
import subprocess

import pytest

from codetailor.config import RetrievalConfig
from retrieval import git as hardened
from retrieval.selection import Selection, file_chunks, select_files
from tests.retrieval.gitrepo import GitRepo

CFG = RetrievalConfig()

# Every config key that names a program git may run, each planted to touch its own marker.
PLANTED = {
    "core.fsmonitor": "{touch} fsmonitor; false",
    "core.hooksPath": "{hooks}",
    "core.pager": "{touch} pager; cat",
    "pager.log": "{touch} pager_log; cat",
    "pager.blame": "{touch} pager_blame; cat",
    "core.sshCommand": "{touch} ssh",
    "core.askPass": "{touch} askpass",
    "credential.helper": "!{touch} credential",
    "diff.external": "{touch} external_diff",
    "log.showSignature": "true",
    "gpg.program": "{touch} gpg",
    "filter.evil.clean": "{touch} clean; cat",
    "filter.evil.smudge": "{touch} smudge; cat",
    "filter.evil.process": "{touch} process",
    "filter.Evil2.clean": "{touch} clean2; cat",
    "diff.evil.textconv": "{touch} textconv; cat",
    "diff.evil.command": "{touch} diff_command",
    "merge.evil.driver": "{touch} merge_driver",
    "core.editor": "{touch} editor",
    "gc.auto": "1",
}


def plant(repo: GitRepo, markers) -> None:
    hooks = markers / "hooks"
    hooks.mkdir()
    for hook in ("post-checkout", "pre-auto-gc", "post-index-change", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {markers}/hook_{hook}\n")
        (hooks / hook).chmod(0o755)
    touch = f"cd {markers} && touch"
    for key, value in PLANTED.items():
        subprocess.run(["git", "-C", str(repo.root), "config", key,
                        value.format(touch=touch, hooks=hooks)], check=True)
    # an included file planting a driver the repository's own config does not name
    inc = repo.root / ".git" / "extra.cfg"
    inc.write_text(f'[filter "hidden"]\n\tclean = "{touch} hidden_clean; cat"\n')
    subprocess.run(["git", "-C", str(repo.root), "config", "include.path", "extra.cfg"], check=True)


@pytest.fixture
def planted(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"app/main.py": "def main():\n    return 1\n", "lib/util.py": "def util(x):\n    return x\n",
                 "lib/more.py": "def more(y):\n    return y\n",
                 ".gitattributes": "*.py filter=evil diff=evil merge=evil\nlib/*.py filter=Evil2\n"
                                   "lib/more.py filter=hidden\n"},
                "initial", days_ago=10)
    repo.commit({"app/main.py": "def main():\n    return 2\n"}, "fix: bug in main", days_ago=2)
    markers = tmp_path / "markers"
    markers.mkdir()
    plant(repo, markers)
    # modified and untracked working-tree files make git hash contents (clean filters) and blame them
    (repo.root / "app/main.py").write_text("def main():\n    return 3\n")
    (repo.root / "app/new.py").write_text("def new():\n    return 4\n")
    (repo.root / "lib/more.py").write_text("def more(y):\n    return -y\n")
    return repo, markers


def _markers(markers):
    return sorted(p.name for p in markers.iterdir() if p.name != "hooks")


def test_planted_config_runs_nothing_and_files_are_still_selected(planted):
    repo, markers = planted
    # the plant works: plain git runs the repository's commands
    subprocess.run(["git", "-C", str(repo.root), "status"], capture_output=True)
    subprocess.run(["git", "-C", str(repo.root), "blame", "--", "app/main.py"], capture_output=True)
    assert {"fsmonitor", "process", "textconv"} <= set(_markers(markers)), _markers(markers)
    for p in markers.iterdir():
        if p.name != "hooks":
            p.unlink()

    sel = Selection(since="30d", max_bug_fixes=5)
    r = select_files(repo.root, sel, CFG)
    assert sorted(f.path for f in r.files) == ["app/main.py", "app/new.py", "lib/more.py", "lib/util.py"]
    main = next(f for f in r.files if f.path == "app/main.py")
    assert main.recent_lines == frozenset({1, 2}) and file_chunks(main, sel, CFG)
    assert _markers(markers) == []


def test_git_env_ignores_inherited_git_variables(planted, monkeypatch, tmp_path):
    repo, markers = planted
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {markers}/env_external")
    monkeypatch.setenv("GIT_PAGER", f"touch {markers}/env_pager")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='touch env_fsmonitor'")
    r = select_files(repo.root, Selection(since="30d"), CFG)
    assert len(r.files) == 4 and _markers(markers) == []


def test_tenant_url_refuses_file_transport(tmp_path):
    src = GitRepo(tmp_path / "src")
    src.commit({"a.py": "x = 1\n"}, "init")
    g = hardened.Git(tmp_path, tenant_url=True)
    r = g.run("clone", "-q", f"file://{src.root}", str(tmp_path / "copy"), check=False)
    assert r.returncode != 0 and "not allowed" in r.stderr
    r = g.run("clone", "-q", "ext::sh -c touch% /tmp/never", str(tmp_path / "copy2"), check=False)
    assert r.returncode != 0 and not os.path.exists("/tmp/never")
    assert hardened.Git(tmp_path).run("clone", "-q", f"file://{src.root}", str(tmp_path / "ok"),
                                      check=False).returncode == 0


def test_missing_git_is_a_clear_error(tmp_path, monkeypatch):
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"a.py": "x = 1\n"}, "init")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(hardened.GitMissing, match="git is not installed"):
        select_files(repo.root, Selection(), CFG)
    assert [f.path for f in select_files(plain, Selection(), CFG).files] == ["b.py"]  # a plain folder needs no git


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another uid")
def test_folder_owned_by_another_uid_is_still_a_repository(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"a.py": "x = 1\n"}, "init", days_ago=1)
    for dirpath, dirnames, filenames in os.walk(repo.root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, 65534, 65534)
    plain = subprocess.run(["git", "-C", str(repo.root), "ls-files"], capture_output=True, text=True,
                           env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"})
    assert "dubious ownership" in plain.stderr   # what plain git says
    r = select_files(repo.root, Selection(since="30d"), CFG)
    assert [f.path for f in r.files] == ["a.py"]
