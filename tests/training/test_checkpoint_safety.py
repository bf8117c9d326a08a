"""Training checkpoints live in the tenant's work dir; loading one must never run code
(torch.load with weights_only), and a real checkpoint still resumes."""

from __future__ import annotations

import io

import torch

from training.lora import attach_lora, load_base
from training.loop import Checkpoint, LoopState


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a hostile pickle does on load
        return (open, (str(self.marker), "w"))


def _model_and_opt(tiny_llama):
    model, _ = load_base(tiny_llama, "bfloat16")
    pm = attach_lora(model, 4, 8, seed=0)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    return pm, opt


def test_a_checkpoint_that_carries_code_is_not_run(tiny_llama, tmp_path):
    pm, opt = _model_and_opt(tiny_llama)
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"key": "k", "lora": {}, "optimizer": {}, "state": {}, "x": _Planted(marker)}, buf)
    path = tmp_path / "train.pt"
    path.write_bytes(buf.getvalue())
    assert Checkpoint(path, "k").load(pm, opt) is None  # refused: the run starts over
    assert not marker.exists()


def test_a_real_checkpoint_round_trips_with_weights_only(tiny_llama, tmp_path):
    pm, opt = _model_and_opt(tiny_llama)
    ids = torch.tensor([[1, 2, 3, 4]])
    pm(input_ids=ids).logits.float().sum().backward()
    opt.step()  # optimizer state with tensors, betas tuples, ...
    ck = Checkpoint(tmp_path / "train.pt", "k")
    ck.save(pm, opt, LoopState(micro=7, step=3, tokens=90, recent=[1.5, 1.25]))
    assert (tmp_path / "train.pt").stat().st_mode & 0o077 == 0
    pm2, opt2 = _model_and_opt(tiny_llama)
    state = ck.load(pm2, opt2)
    assert state is not None and (state.micro, state.step, state.recent, state.resumed_from) == (7, 3, [1.5, 1.25], 7)
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
