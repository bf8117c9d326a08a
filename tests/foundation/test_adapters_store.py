import pytest

from codetailor.adapters import AdapterStore, list_rows
from codetailor.artifacts import AdapterMeta
from codetailor.errors import NotFound
from codetailor.home import Home


def _publish(store, note):
    with store.new_version() as staged:
        (staged.dir / "adapter_config.json").write_text("{}")
        staged.meta = AdapterMeta(steps=note)
    return staged.version


def test_versions_activation_and_rollback(tmp_path):
    store = AdapterStore(Home(tmp_path).tenant("acme"))
    v1, v2 = _publish(store, 1), _publish(store, 2)
    assert (v1, v2) == ("v0001", "v0002") and store.latest() == "v0002"
    assert store.meta(v1).uid != store.meta(v2).uid
    assert (store.meta(v2).steps, store.meta(v2).version, store.meta(v2).tenant) == (2, v2, "acme")
    assert store.active() is None and store.serving_system() == "rag"
    store.set_active(v1)
    store.set_active(v2)
    assert store.serving_system() == "ft+rag"
    assert store.rollback().active == v1
    rows = {r["version"]: r for r in list_rows(store)}
    assert rows[v1]["active"] and rows[v2]["latest"]
    with pytest.raises(NotFound):
        store.set_active("v0099")


def test_failed_version_is_not_published(tmp_path):
    store = AdapterStore(Home(tmp_path).tenant("acme"))
    with pytest.raises(RuntimeError):
        with store.new_version() as staged:
            (staged.dir / "adapter_model.safetensors").write_bytes(b"half")
            raise RuntimeError("killed")
    assert store.versions() == []


def test_system_override(tmp_path):
    store = AdapterStore(Home(tmp_path).tenant("acme"))
    store.set_active(_publish(store, 1))
    store.set_system("ft")
    assert store.serving_system() == "ft"
    store.set_system("rag", override=True)
    assert store.serving_system() == "rag"
    with pytest.raises(ValueError):
        store.set_system("bogus")
