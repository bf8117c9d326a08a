"""Sources over ssh with a deploy key, against OpenSSH's sshd on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.sync import sshserver

pytestmark = pytest.mark.skipif(not sshserver.available(), reason="needs openssh-server (sshd) and ssh-keygen")


@pytest.fixture
def sshd(tmp_path):
    deploy = sshserver.keygen(tmp_path / "deploy_key")
    try:
        server = sshserver.SSHServer(tmp_path / "sshd", deploy)
    except (RuntimeError, PermissionError) as e:
        pytest.skip(f"sshd does not start here: {e}")
    server.deploy_key = deploy
    yield server
    server.close()


def test_fetch_with_a_deploy_key_and_known_hosts(tmp_path, settings, tenant, upstream, sshd):
    from codetailor.sources import FetchFailed, sources_from_settings

    upstream.work.commit({"app/main.py": "def main():\n    return 1\n"}, "one")
    head = upstream.push()
    sources = sources_from_settings(settings)
    sources.credentials.add_ssh("deploy", sshd.deploy_key, sshd.known_hosts)
    sources.add("acme", "app", sshd.url(upstream.bare), credential="deploy")
    spec = sources.specs(tenant)[0]
    assert sources.remote_commit(spec) == head
    assert sources.fetch(tenant, spec)[0] == head
    assert (tenant.source_clone("app") / "app" / "main.py").is_file()

    other = sshserver.keygen(tmp_path / "other_key")            # a key the server does not know
    sources.credentials.add_ssh("other", other, sshd.known_hosts)
    sources.add("acme", "other", sshd.url(upstream.bare), credential="other")
    with pytest.raises(FetchFailed, match="authentication failed .* credential 'other'"):
        sources.remote_commit(next(s for s in sources.specs(tenant) if s.name == "other"))

    sources.credentials.add_ssh("nohosts", sshd.deploy_key)     # unknown host key: refused, not trusted
    sources.add("acme", "nohosts", sshd.url(upstream.bare), credential="nohosts")
    with pytest.raises(FetchFailed, match="[Hh]ost key verification failed"):
        sources.remote_commit(next(s for s in sources.specs(tenant) if s.name == "nohosts"))


def test_a_tenants_url_never_uses_the_servers_own_ssh_identity(tmp_path, monkeypatch, upstream, sshd):
    """The service user's ssh agent holds a key the git host accepts: the operator's own sources may
    use it, a URL a tenant supplied may not (nor the user's default key files, nor ~/.netrc)."""
    import os
    import shutil
    import subprocess

    from retrieval.git import GitError, run_git

    if not shutil.which("ssh-agent"):
        pytest.skip("needs ssh-agent")
    upstream.work.commit({"a.py": "x = 1\n"}, "one")
    upstream.push()
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            __import__("time").sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.deploy_key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        url = sshd.url(upstream.bare)
        known = f"-o UserKnownHostsFile={sshd.known_hosts}"
        assert run_git(None, "ls-remote", "--", url, env={"GIT_SSH_COMMAND": f"ssh -F /dev/null -o BatchMode=yes {known}"})
        # a tenant's URL: the ssh command it gets by default (with the host's key known, so that
        # only the identity can fail) is refused for want of a key
        from retrieval.git import _NO_IDENTITY_SSH

        shown = run_git(None, "-c", "alias.env=!echo $HOME $GIT_SSH_COMMAND", "env", tenant_url=True).strip()
        assert shown == f"/nonexistent {_NO_IDENTITY_SSH}"
        with pytest.raises(GitError) as e:
            run_git(None, "ls-remote", "--", url, tenant_url=True, env={"GIT_SSH_COMMAND": f"{_NO_IDENTITY_SSH} {known}"})
        assert "Permission denied (publickey)" in e.value.stderr
    finally:
        agent.terminate()
        agent.wait(10)
