"""The AdminService's source RPCs over a real gRPC server (ingress faked): tenant-facing URLs only,
credentials by granted name and never shown, the caller's own tenant, errors from the one table."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from serving.front import FrontServer, LocalIngress
from serving.stubs import load
from tests.serving.test_front_calls import SlowIngress

apb, apb_grpc = load()[2], load()[3]
TOKEN = "ghp_" + "s3cr3t" * 6
URL = "https://git.example.com/acme/app.git"


@pytest.fixture
def admin(tmp_path):
    """(call, home, settings): call(method, request, key=acme's admin key) against a running front server."""
    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry

    settings = load_settings(home=tmp_path / "home", key_pepper="p", sync={"max_tenant_sources": 3})
    registry = Registry(Home(settings.home), "p")
    _, key = registry.create_tenant("acme")
    registry.create_tenant("other")
    keys = {"admin": key, "developer": registry.create_key("acme", "developer")}
    token = tmp_path / "token"
    token.write_text(TOKEN)
    from codetailor.credentials import CredentialStore

    store = CredentialStore(Home(settings.home))
    store.add_token("acme-gh", token, tenant="acme")
    store.add_token("other-gh", token, tenant="other")
    store.add_token("ops-gh", token)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    front = FrontServer(settings, LocalIngress(SlowIngress(0.0)))
    port = asyncio.run_coroutine_threadsafe(front.start(port=0), loop).result(30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = apb_grpc.AdminServiceStub(channel)

    def call(method, request, role="admin"):
        return getattr(stub, method)(request, metadata=(("authorization", f"Bearer {keys[role]}"),), timeout=30)

    yield call, settings
    channel.close()
    asyncio.run_coroutine_threadsafe(front.stop(0.1), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _code(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    return e.value.code(), e.value.details()


def test_add_list_remove_a_source(admin):
    call, settings = admin
    info = call("AddSource", apb.AddSourceRequest(name="app", url=URL, branch="main", credential="acme-gh"))
    assert (info.name, info.url, info.branch, info.credential, info.tenant_added) == ("app", URL, "main", "acme-gh", True)
    listed = call("ListSources", apb.TenantRequest())
    assert [s.name for s in listed.sources] == ["app"] and listed.sources[0].last_commit == ""
    assert TOKEN not in repr(info) + repr(listed)
    assert _code(call, "AddSource", apb.AddSourceRequest(name="app", url=URL))[0] == grpc.StatusCode.ALREADY_EXISTS

    removed = call("RemoveSource", apb.RemoveSourceRequest(name="app"))
    assert removed.name == "app" and removed.index_rows_dropped
    assert call("ListSources", apb.TenantRequest()).sources == []
    assert _code(call, "RemoveSource", apb.RemoveSourceRequest(name="app"))[0] == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("url", ["file:///etc", "/etc", ".", "http://git.example.com/a.git", "ext::sh -c touch% x",
                                 "https://user:pw@git.example.com/a.git", "git@-oProxyCommand=x:a.git", ""])
def test_only_https_and_ssh_urls(admin, url):
    call, _ = admin
    code, _ = _code(call, "AddSource", apb.AddSourceRequest(name="app", url=url))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert call("ListSources", apb.TenantRequest()).sources == []


def test_ssh_urls_are_accepted(admin):
    call, _ = admin
    for i, url in enumerate(["ssh://git@git.example.com/acme/app.git", "git@git.example.com:acme/app.git"]):
        assert call("AddSource", apb.AddSourceRequest(name=f"s{i}", url=url)).url == url


@pytest.mark.parametrize("request_", [apb.AddSourceRequest(name="../x", url=URL),
                                      apb.AddSourceRequest(name="app", url=URL, branch="-x"),
                                      apb.AddSourceRequest(name="app", url=URL, branch="a..b")])
def test_bad_names_and_branches(admin, request_):
    call, _ = admin
    assert _code(call, "AddSource", request_)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_only_credentials_granted_to_the_tenant(admin):
    call, _ = admin
    answers = {name: _code(call, "AddSource", apb.AddSourceRequest(name="app", url=URL, credential=name))
               for name in ("other-gh", "ops-gh", "no-such")}
    assert {code for code, _ in answers.values()} == {grpc.StatusCode.NOT_FOUND}
    # worded alike: an unknown name and another tenant's (or the operator's) look the same
    assert len({d.replace(name, "") for name, (_, d) in answers.items()}) == 1
    assert all(TOKEN not in d for _, d in answers.values())
    ssh_url = "ssh://git@git.example.com/acme/app.git"   # a token credential needs https
    assert _code(call, "AddSource", apb.AddSourceRequest(name="app", url=ssh_url, credential="acme-gh"))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT


def test_admin_role_and_own_tenant_only(admin):
    call, _ = admin
    req = apb.AddSourceRequest(name="app", url=URL)
    assert _code(call, "AddSource", req, role="developer")[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(call, "ListSources", apb.TenantRequest(), role="developer")[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(call, "RefreshSources", apb.TenantRequest(), role="developer")[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(call, "AddSource", apb.AddSourceRequest(tenant="other", name="app", url=URL))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    assert _code(call, "ListSources", apb.TenantRequest(tenant="other"))[0] == grpc.StatusCode.PERMISSION_DENIED


def test_a_tenants_source_count_is_capped(admin):
    call, _ = admin
    for i in range(3):
        call("AddSource", apb.AddSourceRequest(name=f"s{i}", url=URL))
    assert _code(call, "AddSource", apb.AddSourceRequest(name="s3", url=URL))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_an_operators_folder_source_is_shown_without_its_path_and_not_removable(admin, tmp_path):
    from codetailor.tenants import registry_from_settings

    call, settings = admin
    folder = tmp_path / "srv" / "mirror"
    registry_from_settings(settings).add_source("acme", "ops", str(folder), url=str(folder), credential="ops-gh")
    listed = call("ListSources", apb.TenantRequest())
    assert [(s.name, s.url, s.credential, s.tenant_added) for s in listed.sources] == [("ops", "", "", False)]
    assert str(tmp_path) not in repr(listed)
    assert _code(call, "RemoveSource", apb.RemoveSourceRequest(name="ops"))[0] == grpc.StatusCode.NOT_FOUND


def test_a_source_error_reaches_the_tenant_without_server_paths(admin):
    from codetailor.home import Home
    from codetailor.sources import SourceSpec, read_state, write_state

    call, settings = admin
    call("AddSource", apb.AddSourceRequest(name="app", url=URL))
    paths = Home(settings.home).tenant("acme")
    spec = SourceSpec("app", URL, None, None, None, True, str(paths.source_clone("app")))
    write_state(paths, read_state(paths, spec), last_error=f"fatal: cannot lock {paths.source_clone('app')}/.git")
    err = call("ListSources", apb.TenantRequest()).sources[0].last_error
    assert err.startswith("fatal: cannot lock <home>/") and str(settings.home) not in err


def test_refresh_is_queued_and_returns_at_once(admin, monkeypatch):
    from codetailor.refresh import RefreshQueue
    from serving import admin as admin_ops

    call, settings = admin
    assert _code(call, "RefreshSources", apb.TenantRequest())[0] == grpc.StatusCode.NOT_FOUND   # nothing to refresh
    call("AddSource", apb.AddSourceRequest(name="app", url=URL))
    release, ran = threading.Event(), []

    def child(tenant):   # stands for the `codetailor refresh` child process
        ran.append(tenant)
        release.wait(30)
        return 0, ""
    monkeypatch.setattr(admin_ops, "_queue", RefreshQueue(settings, log=lambda m: None, command=child))
    first = call("RefreshSources", apb.TenantRequest())
    assert first.queued and first.tenant == "acme"
    again = call("RefreshSources", apb.TenantRequest())          # running or queued: not twice
    assert not again.queued and "acme" not in again.message
    release.set()
    for _ in range(100):
        if not admin_ops._queue._thread.is_alive():
            break
        threading.Event().wait(0.05)
    assert ran == ["acme"]


def test_the_queue_takes_tenants_in_turn_once_each():
    from codetailor.refresh import RefreshQueue

    release, ran = threading.Event(), []

    def child(tenant):
        ran.append(tenant)
        release.wait(30)
        return 1 if tenant == "b" else 0, "boom"
    logs = []
    q = RefreshQueue(None, log=logs.append, command=child)
    assert q.submit("a")[0] and q.submit("b")[0] and not q.submit("b")[0] and q.submit("c")[0]
    release.set()
    q._thread.join(10)
    assert ran == ["a", "b", "c"] and any("b ended with exit code 1: boom" in m for m in logs)
