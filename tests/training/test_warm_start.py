"""Warm start: a new adapter version continues from a parent's weights, and a file the parent trained
on never lands in the child's held-out set because it was renamed."""

from __future__ import annotations

import pytest
import torch

from codetailor.adapters import AdapterStore
from training import TrainOptions, TrainingError, train_tenant
from codetailor.split import split_files

from tests.training.conftest import tiny_settings

pytestmark = pytest.mark.usefixtures("one_thread")   # the tiny model on one thread


def _opts(**kw):
    return TrainOptions(**{**dict(rank=8, alpha=16, epochs=1.0, replay_ratio=0.0, progress=False), **kw})


def _lora_b(path):
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(path / "adapter_model.safetensors").items() if "lora_B" in k}


def test_warm_start_continues_from_the_parent_and_keeps_its_code_out_of_heldout(tiny_llama, tenant_repo):
    _, paths, repo = tenant_repo
    settings = tiny_settings(paths.root.parents[1], tiny_llama, threads=1)
    train_tenant(settings, paths, _opts())
    store = AdapterStore(paths)
    parent = store.meta("v0001")
    assert len(parent.data["train_content_sha256"]) == parent.split.train_files

    # rename a file the parent trained on to a path the split holds out
    paths_now = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.py"))
    trained = next(p for p in paths_now if p not in parent.split.heldout_files)
    new = next(f"pkg/renamed{k}.py" for k in range(1000)
               if f"pkg/renamed{k}.py" in split_files([*(p for p in paths_now if p != trained), f"pkg/renamed{k}.py"],
                                                      settings.training.split_seed,
                                                      settings.training.heldout_fraction).heldout)
    (repo / trained).rename(repo / new)

    # a near-zero learning rate: the child's weights are the parent's, not PEFT's zero-initialised B
    slow = tiny_settings(paths.root.parents[1], tiny_llama, threads=1, lr=1e-12)
    child = train_tenant(slow, paths, _opts(warm_start="v0001"))
    meta = store.meta(child["adapter_version"])
    assert meta.warm_start == {"parent": "v0001", "heldout_seen_by_parent": [new]}
    assert new not in meta.split.heldout_files and meta.split.heldout_files
    a, b = _lora_b(store.path("v0001")), _lora_b(store.path(child["adapter_version"]))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-2) for k in a)
    assert any(a[k].abs().max() > 0 for k in a)
    cold = train_tenant(slow, paths, _opts())
    assert all(v.abs().max() < 1e-6 for v in _lora_b(store.path(cold["adapter_version"])).values())


def test_warm_start_needs_the_same_rank(tiny_llama, tenant_repo):
    _, paths, _ = tenant_repo
    settings = tiny_settings(paths.root.parents[1], tiny_llama, threads=1)
    train_tenant(settings, paths, _opts())
    with pytest.raises(TrainingError, match="cannot warm-start from v0001: it has rank 8"):
        train_tenant(settings, paths, _opts(rank=4, warm_start="v0001"))
