"""The admin API's refresh queue runs `codetailor refresh --index-only` as a child process of the
serving process, on the same home."""

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
