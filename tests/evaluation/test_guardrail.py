"""The guardrail refuses worse or forgetful adapters and foreign base models; rollback works."""

import pytest

from codetailor.adapters import AdapterStore
from codetailor.errors import NotFound
from evaluation import guardrail
from tests.evaluation.helpers import add_adapter, fake_model_dir, settings_with, tenant


@pytest.fixture
def env(tmp_path):
    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path), cqi_threshold=6.0,
                             max_public_loss_increase=0.05)
    return settings, tenant(settings)


def test_activates_a_better_adapter(env):
    settings, paths = env
    v = add_adapter(paths, cqi=7.2)
    out = guardrail.activate(settings, paths, v)
    assert out["active"] == v and AdapterStore(paths).active() == v


@pytest.mark.parametrize("cqi, plc, why", [
    (5.0, 0.0, "not above the threshold"),        # no better than base
    (3.1, 0.0, "not above the threshold"),        # worse than base
    (6.0, 0.0, "not above the threshold"),        # equal to the threshold is not above it
    (None, 0.0, "has not been evaluated"),
    (8.0, 0.2, "public-code loss rose"),          # forgets public code
    (8.0, None, "no public_loss_change"),
])
def test_refuses(env, cqi, plc, why):
    settings, paths = env
    good = add_adapter(paths, cqi=7.0)
    guardrail.activate(settings, paths, good)
    bad = add_adapter(paths, cqi=cqi, public_loss_change=plc)
    with pytest.raises(guardrail.GuardrailRefused, match=why):
        guardrail.activate(settings, paths, bad)
    assert AdapterStore(paths).active() == good  # unchanged


def test_refuses_an_adapter_of_another_base_model(env):
    settings, paths = env
    v = add_adapter(paths, base_sha="b" * 64, cqi=9.0)
    with pytest.raises(guardrail.BaseModelMismatch, match="another base model"):
        guardrail.activate(settings, paths, v)


def test_refuses_an_adapter_trained_in_another_prompt_template(env):
    settings, paths = env
    same = add_adapter(paths, cqi=9.0, extra={"template": "smollm2/text"})
    guardrail.activate(settings, paths, same)
    other = add_adapter(paths, cqi=9.0, extra={"template": "qwen2.5-coder/native"})
    with pytest.raises(guardrail.BaseModelMismatch, match="prompt template qwen2.5-coder/native, but smollm2/text"):
        guardrail.activate(settings, paths, other)
    assert AdapterStore(paths).active() == same
    rows = {r["version"]: r for r in guardrail.versions(settings, paths)}
    assert rows[same]["retrain"] is None and rows[same]["allowed"]
    assert "prompt template qwen2.5-coder/native" in rows[other]["retrain"] and not rows[other]["allowed"]


def test_adapters_list_says_which_versions_need_retraining_for_another_base(env):
    settings, paths = env
    old = add_adapter(paths, base_sha="b" * 64, cqi=9.0)
    rows = {r["version"]: r for r in guardrail.versions(settings, paths)}
    assert "another base model" in rows[old]["retrain"] and not rows[old]["allowed"]


def test_unknown_version(env):
    settings, paths = env
    with pytest.raises(NotFound):
        guardrail.activate(settings, paths, "v0042")


def test_rollback_returns_to_the_previous_version(env):
    settings, paths = env
    v1, v2 = add_adapter(paths, cqi=7.0), add_adapter(paths, cqi=8.0)
    guardrail.activate(settings, paths, v1)
    guardrail.activate(settings, paths, v2)
    rows = {r["version"]: r for r in guardrail.versions(settings, paths)}
    assert rows[v2]["active"] and rows[v2]["latest"] and rows[v1]["previous"] and rows[v1]["allowed"]
    out = guardrail.rollback(settings, paths)
    assert out["active"] == v1 and AdapterStore(paths).active() == v1
    with pytest.raises(NotFound, match="no previous"):
        guardrail.rollback(settings, paths)


def test_rollback_without_history(env):
    settings, paths = env
    with pytest.raises(NotFound):
        guardrail.rollback(settings, paths)
