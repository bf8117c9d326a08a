"""engine.resolver: refs, ids, and the checks that keep bad adapters out of vLLM."""

from __future__ import annotations

import json
import struct

import pytest

from codetailor.adapters import AdapterStore
from codetailor.errors import NotFound
from codetailor.home import Home
from engine.protocol import AdapterLoadError, AdapterRef
from engine.resolver import AdapterResolver


def _safetensors(n_floats: int = 4) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n_floats)


def _publish(store: AdapterStore, rank: int = 8, weights: bytes | None = None) -> str:
    with store.new_version() as staged:
        (staged.dir / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 16}))
        (staged.dir / "adapter_model.safetensors").write_bytes(_safetensors() if weights is None else weights)
    version = staged.version
    return version


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path / "home")


def test_ref_for_follows_the_active_version(home):
    r = AdapterResolver(home)
    store = AdapterStore(home.tenant("acme"))
    assert r.ref_for("acme") is None
    v1 = _publish(store)
    assert r.ref_for("acme") is None  # published, not active
    store.set_active(v1)
    ref = r.ref_for("acme")
    assert (ref.tenant, ref.version, ref.uid) == ("acme", v1, store.meta(v1).uid)
    with pytest.raises(NotFound):
        r.ref_for("acme", "v0042")


def test_ids_are_unique_per_version_and_never_reused(home):
    r = AdapterResolver(home)
    store = AdapterStore(home.tenant("acme"))
    v1, v2 = _publish(store), _publish(store)
    a, b = r.ref_for("acme", v1), r.ref_for("acme", v2)
    assert r.int_id(a) != r.int_id(b)
    assert r.int_id(a) == r.int_id(r.ref_for("acme", v1)) == AdapterResolver(home).int_id(a)
    # A recreated tenant's v0001 has a new uid: a new id, never the old one.
    recreated = AdapterRef(a.tenant, a.version, "f" * 32)
    assert r.int_id(recreated) not in {r.int_id(a), r.int_id(b)}
    other = AdapterRef("other", v1, a.uid)
    assert r.int_id(other) not in {r.int_id(a), r.int_id(b), r.int_id(recreated)}


def test_lora_request_points_into_the_tenants_adapter_dir(home):
    pytest.importorskip("vllm")
    r = AdapterResolver(home, max_lora_rank=16)
    store = AdapterStore(home.tenant("acme"))
    v = _publish(store)
    ref = r.ref_for("acme", v)
    req = r.lora_request(ref)
    assert req.lora_int_id == r.int_id(ref)
    assert req.lora_path == str(store.path(v))


@pytest.mark.parametrize("problem,match", [
    ("rank", "rank 32 > engine.max_lora_rank 16"),
    ("garbage", "corrupt adapter_model.safetensors"),
    ("truncated", "truncated"),
    ("no_weights", "no adapter_model.safetensors"),
    ("no_config", "no adapter_config.json"),
])
def test_bad_adapter_files_raise_adapter_load_error(home, problem, match):
    r = AdapterResolver(home, max_lora_rank=16)
    store = AdapterStore(home.tenant("acme"))
    weights = {"garbage": b"\xff" * 50, "truncated": _safetensors()[:-4]}.get(problem)
    v = _publish(store, rank=32 if problem == "rank" else 8, weights=weights)
    d = store.path(v)
    if problem == "no_weights":
        (d / "adapter_model.safetensors").unlink()
    if problem == "no_config":
        (d / "adapter_config.json").unlink()
    with pytest.raises(AdapterLoadError, match=match):
        r.adapter_dir(r.ref_for("acme", v))


def test_a_ref_cannot_smuggle_a_path(home):
    r = AdapterResolver(home)
    with pytest.raises(AdapterLoadError):
        r.adapter_dir(AdapterRef("acme", "../../etc", "x"))
    with pytest.raises(AdapterLoadError):
        r.adapter_dir(AdapterRef("../evil", "v0001", "x"))
