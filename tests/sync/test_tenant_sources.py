"""What the admin API's sources rest on: its refresh queue runs `codetailor refresh --index-only` as a
child process of the serving process, on the same home; a tenant's source is fetched over https or
ssh only."""

from __future__ import annotations


def test_the_queue_runs_a_real_refresh_child(settings, tenant, tmp_path):
    from codetailor.refresh import RefreshQueue
    from codetailor.sources import SourceSpec, read_state, sources_from_settings

    missing = tmp_path / "gone.git"           # fails at the first git call: no model or index loads
    sources_from_settings(settings).add("acme", "app", f"file://{missing}")
    logs = []
    queue = RefreshQueue(settings, log=logs.append)
    assert queue.submit("acme")[0]
    queue._thread.join(120)
    assert len(logs) == 1 and "refresh of acme ended with exit code 11" in logs[0], logs
    state = read_state(tenant, SourceSpec("app", f"file://{missing}", None, None, None, False, ""))
    assert state.last_error and "app" in state.last_error and state.refreshed_at


def test_a_source_the_tenant_added_is_fetched_over_https_or_ssh_only(settings, tenant, server, upstream):
    """The admin API accepts only https and ssh URLs; the fetch itself refuses every other transport too
    (here the loopback server's plain http, recorded as if a tenant had added it)."""
    import pytest

    from codetailor.refresh import RefreshFailed, refresh_tenant
    from codetailor.sources import SourceSpec, read_state
    from codetailor.tenants import registry_from_settings

    upstream.work.commit({"a.py": "def a():\n    return 1\n"}, "one")
    upstream.push()
    url = server.url("acme.git")
    registry_from_settings(settings).add_source("acme", "app", str(tenant.source_clone("app")), url=url,
                                                tenant_facing=True)
    with pytest.raises(RefreshFailed):
        refresh_tenant(settings, tenant, index_only=True, progress=False)
    state = read_state(tenant, SourceSpec("app", url, None, None, None, True, ""))
    assert "transport 'http' not allowed" in state.last_error and state.indexed_commit is None
