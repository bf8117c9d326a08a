"""An active adapter trained on another base model or template gets base completions."""

from __future__ import annotations

import pytest

from codetailor.adapters import AdapterStore
from codetailor.artifacts import AdapterMeta
from codetailor.model import model_checksum
from tests.evaluation.helpers import fake_model_dir, settings_with, tenant


def _publish(paths, meta: dict) -> str:
    store = AdapterStore(paths)
    with store.new_version() as staged:
        staged.meta = AdapterMeta.from_dict(meta)
    store.set_active(staged.version)
    return staged.version


@pytest.mark.parametrize("meta, served", [
    ({"base_model": {"checksum": "a" * 64}, "template": "smollm2/text"}, True),
    ({"base_model": {"checksum": "a" * 64}}, True),                     # before templates were recorded
    ({}, True),                                                          # records no base model: as before
    ({"base_model": {"checksum": "b" * 64}}, False),                    # model.base changed since
    ({"base_model": {"checksum": "a" * 64}, "template": "qwen2.5-coder/native"}, False),
])
def test_ingress_serves_an_adapter_only_on_the_base_it_was_trained_for(tmp_path, meta, served, caplog,
                                                                       base_model_path):
    import shutil

    pytest.importorskip("ray")
    from serving.ingress import Ingress

    model = fake_model_dir(tmp_path)
    shutil.copy(base_model_path / "tokenizer.json", model / "tokenizer.json")  # the ingress counts with it
    settings = settings_with(tmp_path / "home", model).model_copy(
        update={"retrieval": settings_with(tmp_path / "home", model).retrieval.model_copy(update={"top_k": 0})})
    assert model_checksum(model) == "a" * 64
    paths = tenant(settings)
    version = _publish(paths, meta)
    ingress = Ingress(settings, None, str(model))
    ref = ingress._adapter(paths)
    assert (ref is not None and ref.version == version) if served else ref is None
    if not served:
        assert "serving base completions to tenant acme" in caplog.text
