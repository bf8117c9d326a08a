import json
import os
import stat

import pytest

from codetailor.errors import AlreadyExists, AuthError, InvalidName, NotFound
from codetailor.home import Home
from codetailor.tenants import Registry, Role


@pytest.fixture
def registry(tmp_path):
    return Registry(Home(tmp_path / "home"))


def test_create_tenant_returns_working_admin_key(registry):
    paths, key = registry.create_tenant("acme")
    assert paths.record.is_file()
    who = registry.authenticate(key)
    assert (who.tenant, who.role) == ("acme", Role.admin)


def test_duplicate_and_invalid_tenant_names(registry):
    registry.create_tenant("acme")
    with pytest.raises(AlreadyExists):
        registry.create_tenant("acme")
    for bad in ["", "..", "../x", "a/b", ".hidden", "UPPER", "x" * 64, "a b", "é"]:
        with pytest.raises(InvalidName):
            registry.create_tenant(bad)


def test_key_roles_and_revocation(registry):
    registry.create_tenant("acme")
    dev = registry.create_key("acme", "developer")
    assert registry.authenticate(dev).role is Role.developer
    key_id = dev.split("_")[1]
    registry.revoke_key(key_id)
    with pytest.raises(AuthError, match="revoked"):
        registry.authenticate(dev)
    assert [k.revoked for k in registry.keys("acme") if k.id == key_id] == [True]


@pytest.mark.parametrize("bad", [None, "", "Bearer x", "ct_zz_abc", "ct_0123456789ab_" + "A" * 10])
def test_malformed_keys_rejected(registry, bad):
    with pytest.raises(AuthError):
        registry.authenticate(bad)


def test_wrong_secret_and_unknown_id(registry):
    registry.create_tenant("acme")
    key = registry.create_key("acme", "developer")
    prefix, key_id, secret = key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'x' * len(secret)}"
    with pytest.raises(AuthError):
        registry.authenticate(forged)
    with pytest.raises(AuthError):
        registry.authenticate(f"ct_{'0' * 12}_{secret}")


def test_only_a_keyed_hash_is_stored(registry, tmp_path):
    registry.create_tenant("acme")
    key = registry.create_key("acme", "developer")
    secret = key.split("_", 2)[2]
    key_file = registry.home.keys_dir / f"{key.split('_')[1]}.json"
    assert secret not in key_file.read_text()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # A different pepper (another server secret) does not verify the same key.
    other = Registry(registry.home, pepper="another-pepper")
    with pytest.raises(AuthError):
        other.authenticate(key)


def test_delete_tenant_removes_keys_and_artifacts(registry):
    paths, admin = registry.create_tenant("acme")
    registry.create_tenant("other")
    (paths.index_dir).mkdir(parents=True)
    registry.delete_tenant("acme")
    assert not paths.root.exists()
    with pytest.raises(AuthError):
        registry.authenticate(admin)
    with pytest.raises(NotFound):
        registry.tenant("acme")
    assert [t["name"] for t in registry.tenants()] == ["other"]


def test_sources_are_kept_per_name(registry):
    registry.create_tenant("acme")
    registry.add_source("acme", "main", "/repos/a")
    registry.add_source("acme", "tools", "/repos/b")
    assert set(registry.sources("acme")) == {"main", "tools"}
    with pytest.raises(InvalidName):
        registry.add_source("acme", "../x", "/tmp")


def test_tenant_paths_are_confined(tmp_path):
    home = Home(tmp_path)
    p = home.tenant("acme")
    assert p.root == tmp_path / "tenants" / "acme"
    with pytest.raises(InvalidName):
        p.adapter_dir("../../etc")
