"""Every selected file resolves inside the source root: links never pull in outside files."""

import os

import pytest

from codetailor.config import RetrievalConfig
from retrieval.selection import Selection, select_files
from tests.retrieval.gitrepo import GitRepo

CFG = RetrievalConfig()
OUTSIDE = "def stolen():\n    return 'OUTSIDE_TEXT'\n"


def _outside(tmp_path):
    out = tmp_path / "outside"
    (out / "b").mkdir(parents=True)
    (out / "leak.py").write_text(OUTSIDE)
    (out / "b" / "c.py").write_text(OUTSIDE)
    (tmp_path / "parent_file.py").write_text(OUTSIDE)   # reachable through `up -> ..`
    return out


def _link_dirs(root, out, tmp_path):
    """Replace (or create) working-tree entries with links: a linked directory, a linked parent,
    `up -> ..`, a link to a directory inside the root, and a linked file."""
    import shutil

    for name, target in (("d", out), ("a", out), ("up", root.parent), ("alias", root / "app")):
        if (root / name).exists():
            shutil.rmtree(root / name)
        os.symlink(target, root / name)
    os.symlink(tmp_path / "parent_file.py", root / "app" / "linked_file.py")


def _assert_inside(result, root):
    assert sorted(f.path for f in result.files) == ["app/main.py"]
    assert all("OUTSIDE_TEXT" not in f.text for f in result.files)
    assert all(os.path.realpath(f.abs_path).startswith(str(root.resolve()) + os.sep) for f in result.files)


def test_git_repo_links_are_skipped(tmp_path):
    out = _outside(tmp_path)
    repo = GitRepo(tmp_path / "repo")
    # tracked as real files first, then swapped for links in the working tree (ls-files still lists them)
    repo.commit({"app/main.py": "def main():\n    return 1\n", "d/leak.py": "x = 1\n", "a/b/c.py": "y = 2\n",
                 "up/parent_file.py": "z = 3\n"}, "init")
    _link_dirs(repo.root, out, tmp_path)
    r = select_files(repo.root, Selection(), CFG)
    _assert_inside(r, repo.root)
    assert r.skipped["symlink"] >= 4


def test_plain_folder_links_are_skipped(tmp_path):
    out = _outside(tmp_path)
    root = tmp_path / "plain"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.py").write_text("def main():\n    return 1\n")
    _link_dirs(root, out, tmp_path)
    r = select_files(root, Selection(), CFG)
    _assert_inside(r, root)
    assert r.skipped["symlink"] >= 1   # the linked file; linked directories are never entered


@pytest.mark.timeout(30)
def test_fifo_and_link_loop_never_hang(tmp_path):
    root = tmp_path / "plain"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.py").write_text("def main():\n    return 1\n")
    os.mkfifo(root / "app" / "pipe.py")
    os.symlink(root / "loop", root / "loop")
    r = select_files(root, Selection(), CFG)
    assert [f.path for f in r.files] == ["app/main.py"] and r.skipped["unreadable"] == 1
