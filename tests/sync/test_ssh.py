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
