"""Connecting sources by URL and fetching them over real git (http with a token, file://)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from codetailor.errors import AlreadyExists, NotFound


def _token_file(tmp_path, token, name="tok"):
    p = tmp_path / name
    p.write_text(token + "\n")
    return p


@pytest.fixture
def sources(settings):
    from codetailor.sources import sources_from_settings

    return sources_from_settings(settings)


def test_credentials_are_private_and_never_listed(settings, tmp_path, server, sources):
    store = sources.credentials
    store.add_token("gh", _token_file(tmp_path, server.token))
    d = store.home.credential_dir("gh")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in d.iterdir())
    assert server.token not in repr([r.model_dump() for r in store.list()])
    with pytest.raises(AlreadyExists):
        store.add_token("gh", _token_file(tmp_path, "other"))
    store.remove("gh")
    with pytest.raises(NotFound):
        store.get("gh")


@pytest.mark.parametrize("url,tenant_facing,ok", [
    ("https://git.example.com/acme/app.git", True, True),
    ("ssh://git@git.example.com/acme/app.git", True, True),
    ("git@github.com:acme/app.git", True, True),
    ("http://git.example.com/acme/app.git", True, False),
    ("file:///etc", True, False),
    ("/etc", True, False),
    ("ext::sh -c touch% /tmp/pwned", True, False),
    ("ext::sh -c touch% /tmp/pwned", False, False),
    ("https://user:pw@git.example.com/a.git", False, False),
    ("https://ghp_secret@git.example.com/a.git", False, False),
    ("--upload-pack=touch /tmp/x", False, False),
    ("ssh://-oProxyCommand=touch%20x/repo.git", False, False),
    ("git@-oProxyCommand=touch:repo.git", True, False),
    ("file:///srv/repo.git", False, True),
])
def test_url_rules(url, tenant_facing, ok):
    from codetailor.sources import SourceError, check_url

    if ok:
        check_url(url, tenant_facing=tenant_facing)
    else:
        with pytest.raises(SourceError):
            check_url(url, tenant_facing=tenant_facing)


def test_tenant_urls_never_fetch_local_files(tmp_path, upstream):
    from retrieval.git import GitError, run_git

    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    upstream.push()
    assert run_git(None, "ls-remote", "--", f"file://{upstream.bare}")     # the operator may
    with pytest.raises(GitError):
        run_git(None, "ls-remote", "--", f"file://{upstream.bare}", tenant_url=True)
    with pytest.raises(GitError):
        run_git(None, "ls-remote", "--", str(upstream.bare), tenant_url=True)


def test_fetch_over_http_with_a_token_keeps_it_out_of_the_clone(tmp_path, settings, tenant, server, upstream,
                                                                 sources):
    upstream.work.commit({"app/main.py": "def main():\n    return 1\n"}, "one")
    head = upstream.push()
    sources.credentials.add_token("gh", _token_file(tmp_path, server.token))
    sources.add("acme", "app", server.url("acme.git"), branch="main", credential="gh")
    spec = sources.specs(tenant)[0]
    assert sources.remote_commit(spec) == head
    commit, history, previous = sources.fetch(tenant, spec)
    assert (commit, history, previous) == (head, "tip", None)
    clone = tenant.source_clone("app")
    assert (clone / "app" / "main.py").read_text().startswith("def main")
    assert (clone / ".git" / "shallow").exists()
    assert any(a and a.startswith("Basic ") for a in server.authorizations)
    leaks = [p for p in tenant.root.rglob("*") if p.is_file() and server.token.encode() in p.read_bytes()]
    assert not leaks
    assert "127.0.0.1" not in (clone / ".git" / "config").read_text()   # no remote recorded at all


def test_wrong_token_is_a_clear_error_without_the_token(tmp_path, settings, tenant, server, upstream, sources):
    from codetailor.sources import FetchFailed

    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    upstream.push()
    wrong = "ghp_wrong" + server.token[9:]
    sources.credentials.add_token("bad", _token_file(tmp_path, wrong))
    sources.add("acme", "app", server.url("acme.git"), credential="bad")
    spec = sources.specs(tenant)[0]
    with pytest.raises(FetchFailed) as e:
        sources.fetch(tenant, spec)
    assert "authentication failed" in str(e.value) and "'bad'" in str(e.value)
    assert wrong not in str(e.value) and server.token not in str(e.value)
    sources.add("acme", "anon", server.url("acme.git"))
    with pytest.raises(FetchFailed, match="authentication failed.*no credential"):
        sources.remote_commit(sources.specs(tenant)[0])


def test_bearer_tokens_and_unknown_branches(tmp_path, settings, tenant, server, upstream, sources):
    from codetailor.sources import FetchFailed

    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    upstream.push()
    sources.credentials.add_token("gitea", _token_file(tmp_path, server.token), username=None)
    sources.add("acme", "app", server.url("acme.git"), branch="nope", credential="gitea")
    with pytest.raises(FetchFailed, match="branch 'nope' does not exist"):
        sources.remote_commit(sources.specs(tenant)[0])
    assert any(a and a.startswith("Bearer ") for a in server.authorizations)


def test_since_fetches_history_back_to_the_cutoff_only(tmp_path, settings, tenant, upstream, sources):
    for days, name in ((400, "old"), (300, "older"), (10, "recent"), (1, "newest")):
        upstream.work.commit({f"{name}.py": f"{name} = 1\n"}, name, days_ago=days)
    upstream.push()
    sources.add("acme", "app", str(upstream.bare), selection={"since": "90d"})
    commit, history, _ = sources.fetch(tenant, sources.specs(tenant)[0])
    clone = tenant.source_clone("app")
    subjects = subprocess.run(["git", "-C", str(clone), "log", "--format=%s", commit], capture_output=True,
                              text=True, check=True).stdout.split()
    assert subjects == ["newest", "recent", "older"]     # the window plus one older boundary commit
    from codetailor.config import load_settings
    from retrieval import Selection, select_files

    picked = select_files(clone, Selection(since="90d"), load_settings(home=settings.home).retrieval)
    assert sorted(f.path for f in picked.files) == ["newest.py", "recent.py"]


def test_max_bug_fixes_fetches_full_history(tmp_path, settings, tenant, upstream, sources):
    for i in range(3):
        upstream.work.commit({"a.py": f"x = {i}\n"}, f"fix bug {i}")
    upstream.push()
    sources.add("acme", "app", str(upstream.bare))
    spec = sources.specs(tenant)[0]
    sources.fetch(tenant, spec)
    assert (tenant.source_clone("app") / ".git" / "shallow").exists()
    spec.selection = {"max_bug_fixes": 1}
    _, history, _ = sources.fetch(tenant, spec)
    assert history == "full" and not (tenant.source_clone("app") / ".git" / "shallow").exists()


def test_remove_deletes_clone_and_record(tmp_path, settings, tenant, upstream, sources):
    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    upstream.push()
    sources.add("acme", "app", f"file://{upstream.bare}")
    sources.fetch(tenant, sources.specs(tenant)[0])
    assert tenant.source_clone("app").is_dir()
    sources.remove("acme", "app")
    assert not tenant.source_clone("app").exists() and sources.specs(tenant) == []
    with pytest.raises(NotFound):
        sources.remove("acme", "app")


def test_mounted_credentials_from_a_secret_folder(tmp_path, settings, tenant, server, upstream):
    from codetailor.config import load_settings
    from codetailor.credentials import CredentialError
    from codetailor.sources import sources_from_settings

    mount = tmp_path / "secret"
    mount.mkdir()
    (mount / "gh.token").write_text(server.token + "\n")
    (mount / "gl.token").write_text(server.token)
    (mount / "gl.bearer").write_text("")
    (mount / "..data").mkdir()            # what a Kubernetes Secret volume also holds
    settings = load_settings(home=settings.home, sync={"credentials_dir": str(mount)})
    sources = sources_from_settings(settings)
    assert [(r.name, r.username) for r in sources.credentials.list()] == [("gh", "x-access-token"), ("gl", None)]
    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    head = upstream.push()
    sources.add("acme", "app", server.url("acme.git"), credential="gh")
    sources.add("acme", "app2", server.url("acme.git"), credential="gl")
    assert [sources.fetch(tenant, s)[0] for s in sources.specs(tenant)] == [head, head]
    assert {a.split()[0] for a in server.authorizations if a} == {"Basic", "Bearer"}
    with pytest.raises(CredentialError, match="mounted"):
        sources.credentials.remove("gh")
