"""The CPU LoRA plugin's ops against a plain per-row reference (no engine)."""

from __future__ import annotations

import pytest
import torch

vllm_punica = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")

from engine import cpu_lora_plugin  # noqa: E402


def _reference(y, x, a_stacked, b_stacked, slots, scale, widths):
    out = y.clone()
    for row, slot in enumerate(slots):
        if slot < 0:
            continue
        off = 0
        for a, b, w in zip(a_stacked, b_stacked, widths):
            out[row, off:off + w] += (x[row] @ a[slot, 0].T * scale) @ b[slot, 0].T
            off += w
    return out


def _wrapper(slots):
    cpu_lora_plugin.register()
    w = vllm_punica.PunicaWrapperCPU(512, 8, "cpu")
    idx = torch.tensor(slots, dtype=torch.long)
    w._token_lora_indices[: len(slots)] = idx
    w._sampler_indices[: len(slots)] = idx
    w.indices_len = [len(slots)] * 4
    w._ct_groups = cpu_lora_plugin.grouped.groups(w.token_lora_indices)
    w._ct_sampler_segments = cpu_lora_plugin._segments(w.sampler_indices)
    return w


@pytest.mark.parametrize("slots", [
    [0, 0, 1, 1, -1, -1, 2, 2],          # contiguous groups, base rows between
    [2, -1, 0, 2, 1, -1, 0, 2],          # interleaved (index tensors, not slices)
    [-1, -1, -1],                        # base only: nothing touched
    [3, 3, 3, 3],                        # the LAST slot: what -1 used to wrap to
])
def test_segment_lora_linear_matches_per_row_math_and_leaves_base_rows(slots):
    torch.manual_seed(0)
    max_loras, rank, d_in, widths = 4, 4, 16, (8, 6)
    a = tuple(torch.randn(max_loras, 1, rank, d_in) for _ in widths)
    b = tuple(torch.randn(max_loras, 1, w, rank) for w in widths)
    x = torch.randn(len(slots), d_in)
    y = torch.randn(len(slots), sum(widths))
    want = _reference(y, x, a, b, slots, 0.5, widths)
    w = _wrapper(slots)
    got = y.clone()
    w.add_lora_linear(got, x, a, b, 0.5, widths)
    torch.testing.assert_close(got, want)
    base_rows = [i for i, s in enumerate(slots) if s < 0]
    assert torch.equal(got[base_rows], y[base_rows])


def test_masked_bgmv_ops_leave_rows_without_adapter_untouched():
    cpu_lora_plugin.register()
    from vllm.lora.ops.torch_ops import lora_ops

    torch.manual_seed(1)
    weights = torch.randn(2, 1, 5, 7)           # both slots occupied
    x = torch.randn(4, 7)
    idx = torch.tensor([0, -1, 1, -1])
    out = torch.full((4, 5), 3.0)
    lora_ops.bgmv_shrink(x, weights, out, idx, 1.0)
    assert torch.equal(out[[1, 3]], torch.full((2, 5), 3.0))
    torch.testing.assert_close(out[0], x[0] @ weights[0, 0].T)
    torch.testing.assert_close(out[2], x[2] @ weights[1, 0].T)
    exp_w = torch.randn(2, 1, 6, 5)
    y = torch.zeros(4, 6)
    lora_ops.bgmv_expand(out, exp_w, y, idx, True)
    assert torch.equal(y[[1, 3]], torch.zeros(2, 6))
    assert getattr(lora_ops.bgmv_expand_slice, cpu_lora_plugin._MARK, False)


def test_segments_group_rows_by_slot():
    segs = dict(cpu_lora_plugin._segments(torch.tensor([1, 1, -1, 0, 1])))
    assert segs[0] == slice(3, 4)
    assert segs[1].tolist() == [0, 1, 4]
    assert -1 not in segs


def test_bf16_weights_use_a_float32_copy_that_follows_in_place_updates():
    torch.manual_seed(2)
    a = (torch.randn(2, 1, 4, 8).bfloat16(),)
    b = (torch.randn(2, 1, 6, 4).bfloat16(),)
    x = torch.randn(3, 8).bfloat16()
    w = _wrapper([1, 1, -1])
    first = torch.zeros(3, 6, dtype=torch.bfloat16)
    w.add_lora_linear(first, x, a, b, 1.0, (6,))
    want = _reference(torch.zeros(3, 6), x.float(), tuple(t.float() for t in a), tuple(t.float() for t in b),
                      [1, 1, -1], 1.0, (6,))
    torch.testing.assert_close(first.float(), want, rtol=2e-2, atol=2e-2)
    a[0][1, 0].copy_(torch.randn(4, 8).bfloat16())  # what vLLM's set_lora does to a slot
    second = torch.zeros(3, 6, dtype=torch.bfloat16)
    w.add_lora_linear(second, x, a, b, 1.0, (6,))
    want = _reference(torch.zeros(3, 6), x.float(), tuple(t.float() for t in a), tuple(t.float() for t in b),
                      [1, 1, -1], 1.0, (6,))
    torch.testing.assert_close(second.float(), want, rtol=2e-2, atol=2e-2)
    assert not torch.equal(first, second)


def _bf16_stacks(slots=3, rank=2, d_in=5, widths=(4, 3)):
    a = tuple(torch.randn(slots, 1, rank, d_in).bfloat16() for _ in widths)
    b = tuple(torch.randn(slots, 1, w, rank).bfloat16() for w in widths)
    return a, b


def _check_fused(w, a, b, widths):
    """A side by side per slice, B block-diagonal: x A^T B^T per slice, nothing across slices."""
    x = torch.randn(2, a[0].shape[3])
    for s in range(a[0].shape[0]):
        got = (x @ w.a[s]) @ w.b[s]
        want = torch.cat([(x @ ai[s, 0].float().T) @ bi[s, 0].float().T for ai, bi in zip(a, b)], dim=1)
        torch.testing.assert_close(got, want)


def test_fused_weights_refresh_only_the_activated_slot():
    torch.manual_seed(2)
    g = cpu_lora_plugin.grouped
    widths = (4, 3)
    a, b = _bf16_stacks(widths=widths)
    first = g.fused(a, b, widths)
    for t in a + b:  # vLLM's activate_adapter: reset_lora + set_lora on one slot ...
        t[1] = torch.randn_like(t[1].float()).bfloat16()
    g.note_activation(1)  # ... then our log entry
    again = g.fused(a, b, widths)
    assert again is first  # updated in place, not rebuilt
    _check_fused(again, a, b, widths)


def test_fused_weights_rebuild_after_a_write_nobody_logged():
    torch.manual_seed(3)
    g = cpu_lora_plugin.grouped
    widths = (4, 3)
    a, b = _bf16_stacks(widths=widths)
    first = g.fused(a, b, widths)
    a[0][2] = torch.randn_like(a[0][2].float()).bfloat16()  # no activation logged
    again = g.fused(a, b, widths)
    assert again is not first
    _check_fused(again, a, b, widths)


def test_groups_pad_uneven_slots_and_skip_base_rows():
    grp = cpu_lora_plugin.grouped.groups(torch.tensor([3, -1, 1, 3, 3, -1]))
    assert (grp.lo, grp.k, grp.g) == (1, 3, 3)  # slots 1..3, the largest group has 3 rows
    assert sorted(grp.rows.tolist()) == [0, 2, 3, 4]
    assert grp.gather[grp.pos].tolist() == grp.rows.tolist()
    assert cpu_lora_plugin.grouped.groups(torch.tensor([-1, -1])) is None


def test_slot_tracking_hooks_vllm_activate_adapter():
    cpu_lora_plugin.register()
    from vllm.lora.model_manager import LoRAModelManager

    assert getattr(LoRAModelManager.activate_adapter, cpu_lora_plugin._MARK, False)


def test_groups_in_order_only_when_rows_are_already_grouped():
    g = cpu_lora_plugin.grouped
    assert g.groups(torch.tensor([2, 2, 2])).in_order
    assert g.groups(torch.tensor([0, 0, 1, 1])).in_order
    assert not g.groups(torch.tensor([1, 0, 1, 0])).in_order
    assert not g.groups(torch.tensor([0, 0, 0, 1])).in_order  # uneven: padded
    assert not g.groups(torch.tensor([0, -1])).in_order


def test_uneven_prefill_goes_slot_by_slot_and_matches_per_row_math():
    # One long prompt on slot 0 and one token on slot 3: padding every slot to 300 rows
    # would waste 899 rows, so the step runs slot by slot.
    torch.manual_seed(4)
    slots = [0] * 300 + [-1] * 5 + [3]
    assert cpu_lora_plugin.grouped.groups(torch.tensor(slots)).segments
    max_loras, rank, d_in, widths = 4, 4, 16, (8, 6)
    a = tuple(torch.randn(max_loras, 1, rank, d_in) for _ in widths)
    b = tuple(torch.randn(max_loras, 1, w, rank) for w in widths)
    x = torch.randn(len(slots), d_in)
    y = torch.randn(len(slots), sum(widths))
    got = y.clone()
    _wrapper(slots).add_lora_linear(got, x, a, b, 0.5, widths)
    torch.testing.assert_close(got, _reference(y, x, a, b, slots, 0.5, widths))
    assert torch.equal(got[300:305], y[300:305])


def test_lora_logits_compute_slots_with_weights_and_skip_all_zero_slots():
    torch.manual_seed(0)
    slots = [0, 1, -1, 1, 0]
    max_loras, rank, hidden, vocab = 2, 4, 8, 32
    a = torch.randn(max_loras, 1, rank, hidden, dtype=torch.bfloat16)
    b = torch.randn(max_loras, 1, vocab, rank, dtype=torch.bfloat16)
    a[1].zero_()  # slot 1: an adapter without lm_head weights
    b[1].zero_()
    x = torch.randn(len(slots), hidden, dtype=torch.bfloat16)
    y = torch.randn(len(slots), vocab)
    want = y.clone()
    for row in (0, 4):
        want[row] += (x[row].float() @ a[0, 0].float().T * 0.5) @ b[0, 0].float().T
    w = _wrapper(slots)
    got = y.clone()
    w.add_lora_logits(got, x, a, b, 0.5)
    torch.testing.assert_close(got, want)
    assert torch.equal(got[[1, 2, 3]], y[[1, 2, 3]])
    assert cpu_lora_plugin._slots_with_weights(a, b) == {0: True, 1: False}
    # vLLM writes a slot in place on activation: the slot is looked at again.
    b[1, 0, 0, 0] = 1.0
    a[1, 0, 0, 0] = 1.0
    cpu_lora_plugin.grouped.note_activation(1)
    assert cpu_lora_plugin._slots_with_weights(a, b) == {0: True, 1: True}


# Qwen2.5-Coder-0.5B's layers: 14 query heads and 2 KV heads of 64 (q 896, k/v 128 wide), MLP 4864.
# Its q/k/v carry a bias, which is the base layer's (already in y): LoRA adds only the product.
QWEN2_05B_LAYERS = [(896, (896, 128, 128)), (896, (896,)), (896, (4864, 4864)), (4864, (896,))]


@pytest.mark.parametrize("slots", [[1, -1, 0, 1, -1, 0], [1, 1, 1, 1], [-1, 0, -1]])
def test_grouped_op_on_qwen2_layer_shapes_matches_per_row_math(slots):
    torch.manual_seed(5)
    max_loras, rank = 2, 8
    for d_in, widths in QWEN2_05B_LAYERS:
        a = tuple(torch.randn(max_loras, 1, rank, d_in) * 0.05 for _ in widths)
        b = tuple(torch.randn(max_loras, 1, w, rank) * 0.05 for w in widths)
        x = torch.randn(len(slots), d_in)
        y = torch.randn(len(slots), sum(widths))  # the base output, bias included
        got = y.clone()
        _wrapper(slots).add_lora_linear(got, x, a, b, 2.0, widths)
        torch.testing.assert_close(got, _reference(y, x, a, b, slots, 2.0, widths), rtol=1e-4, atol=1e-4)
        base_rows = [i for i, s in enumerate(slots) if s < 0]
        assert torch.equal(got[base_rows], y[base_rows])
