from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.retrieval.gitrepo import GitRepo
from tests.sync.gitserver import GitHTTPServer


class Upstream:
    """A developer's working repository and the bare repository it pushes to."""

    def __init__(self, root):
        self.bare = root / "served" / "acme.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        self.work = GitRepo(root / "work")

    def push(self, *, branch: str = "main", force: bool = False) -> str:
        self.work._git("push", "-q", *(["--force"] if force else []), str(self.bare), f"HEAD:refs/heads/{branch}")
        return self.work._git("rev-parse", "HEAD").strip()

    def git(self, *args: str) -> str:
        return self.work._git(*args)


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    return Upstream(tmp_path)


@pytest.fixture
def server(upstream):
    s = GitHTTPServer(upstream.bare.parent, token="ghp_" + secrets.token_hex(16))
    yield s
    s.close()


@pytest.fixture
def settings(tmp_home):
    from codetailor.config import load_settings

    return load_settings(home=tmp_home, retrieval={"exact_vectors": True})


@pytest.fixture
def tenant(settings):
    from codetailor.tenants import registry_from_settings

    paths, _ = registry_from_settings(settings).create_tenant("acme")
    return paths
