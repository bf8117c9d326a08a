"""Training on the tiny random Llama: learning, the published adapter, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from codetailor.adapters import AdapterStore
from training import TrainOptions, TrainingError, train_tenant
from training.examples import Example
from training.budget import BudgetTooSmall
from training.loop import LoopConfig, mean_loss, run_loop
from training.lora import BaseModelError, attach_lora, load_base

from tests.training.conftest import tiny_settings, write_repo

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def _opts(**kw):
    d = dict(rank=8, alpha=16, epochs=1.0, replay_ratio=0.2, progress=False)
    d.update(kw)
    return TrainOptions(**d)


def test_loss_goes_down_on_a_repeated_pattern(tiny_llama):
    model, _ = load_base(tiny_llama, "bfloat16")
    pm = attach_lora(model, 8, 16, seed=0)
    pattern = tuple([11, 22, 33, 44, 55, 66, 77, 88] * 6)
    examples = [Example(pattern, 8, "tenant", "line", "p.py"), Example(pattern[1:] + (11,), 8, "tenant", "line", "p.py")]
    before = mean_loss(pm, examples)
    run_loop(pm, examples, LoopConfig(lr=5e-3, grad_accum=2, epochs=40, warmup_fraction=0.05, seed=0),
             checkpoint=None, progress=False)
    after = mean_loss(pm, examples)
    # The tiny model's random tied embeddings (std 0.02, width 64) cap any logit near 1.3,
    # so from the uniform 10.8 nats the reachable floor is about 9.5: a 0.8 drop is learning.
    assert after < before - 0.8, (before, after)
    # the adapter, not the base, learned it
    assert mean_loss(pm, examples, adapter=False) == pytest.approx(before, rel=1e-3)


def test_train_publishes_an_inactive_peft_adapter(tiny_llama, tenant_repo):
    from peft import PeftModel
    from safetensors import safe_open

    _, paths, _ = tenant_repo
    settings = tiny_settings(paths.root.parents[1], tiny_llama, threads=1)
    summary = train_tenant(settings, paths, _opts(replay_ratio=0.25))
    assert set(summary) >= {"adapter_version", "path", "train_tokens", "epochs", "seconds", "tokens_per_second",
                            "train_loss", "heldout_loss", "public_loss_change"}
    assert summary["adapter_version"] == "v0001" and summary["epochs"] == pytest.approx(1.0)
    store = AdapterStore(paths)
    assert store.versions() == ["v0001"] and store.active() is None   # evaluation activates
    out = Path(summary["path"])
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "meta.json"]
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
        assert any(".mlp.down_proj.lora_B" in k for k in f.keys())
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16
    meta = store.meta("v0001")
    held = meta.split.heldout_files
    assert held and meta.split.train_files + len(held) == 6
    assert meta.base_model.checksum and meta.public_loss_change == pytest.approx(summary["public_loss_change"], abs=1e-4)
    hw, hyper = meta.hardware, meta.hyper_parameters   # the run records its machine and choices
    assert hw["dtypes"]["autocast"] == hyper["autocast"] in ("bfloat16", "float32") and hw["threads"] == 1
    assert hw["dtypes"]["base_weights"] == hyper["base_weights"] != "auto"
    assert meta.base_model.name == str(tiny_llama) and meta.template == "smollm2/text"
    d = meta.data
    # packed (the default): windows train the plain cursors, replay holds the ratio in target tokens
    assert d["kinds"]["window"] > 0 and meta.hyper_parameters["packing"] is True
    pub, ten = d["public_target_tokens"], d["tenant_target_tokens"]
    assert abs(pub / (pub + ten) - 0.25) < 0.05
    assert d["target_tokens_per_epoch"] == pub + ten < d["tokens_per_epoch"]
    # the adapter loads with peft and changes the base model's output
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, out)(ids).logits
    assert not torch.allclose(plain, tuned)
    assert not (paths.work_dir / "train").exists() or not list((paths.work_dir / "train").glob("*.pt"))


def test_explicit_float32_trains_without_autocast(tiny_llama, tenant_repo):
    _, paths, _ = tenant_repo
    settings = tiny_settings(paths.root.parents[1], tiny_llama, threads=1, base_weights="float32",
                             autocast="float32")
    train_tenant(settings, paths, _opts(replay_ratio=0.0))
    hyper = AdapterStore(paths).meta("v0001").hyper_parameters
    assert (hyper["base_weights"], hyper["autocast"]) == ("float32", "float32")


def test_budget_too_small_and_no_code_are_clear_errors(tiny_llama, tenant_repo, tmp_path):
    reg, paths, _ = tenant_repo
    settings = tiny_settings(paths.root.parents[1], tiny_llama, threads=1)
    with pytest.raises(BudgetTooSmall, match="too small"):
        train_tenant(settings, paths, _opts(time_budget=1e-6))
    assert AdapterStore(paths).versions() == []

    empty = tmp_path / "only-binary"
    empty.mkdir()
    (empty / "blob.bin").write_bytes(b"\0\1\2" * 100)
    reg.add_source(paths.tenant, "main", str(empty))
    with pytest.raises(TrainingError, match="no indexable code"):
        train_tenant(settings, paths, _opts())


def test_a_base_without_llama_projections_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(BaseModelError, match="Llama-style"):
        load_base(tmp_path / "gpt2")


def test_cli_errors_are_one_line(tmp_home, tiny_llama, monkeypatch, capsys):
    from codetailor.cli import main

    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(tiny_llama))
    assert main(["train", "--tenant", "nobody"]) == 3
    assert "unknown tenant" in capsys.readouterr().err
    for bad in ("0", "3", "128"):
        assert main(["train", "--tenant", "nobody", "--rank", bad]) == 2
        err = capsys.readouterr().err
        assert "power of two" in err and "Traceback" not in err
    assert main(["train", "--tenant", "nobody", "--time-budget", "soon"]) == 2
    assert "--time-budget" in capsys.readouterr().err


def test_killed_run_leaves_no_version_and_resumes(tiny_llama, tmp_path):
    home = tmp_path / "home"
    repo = write_repo(tmp_path / "repo", n=8)
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(1)
        from pathlib import Path
        from codetailor.home import Home
        from codetailor.tenants import Registry
        from tests.training.conftest import tiny_settings
        from training import TrainOptions, train_tenant
        s = tiny_settings(Path({str(home)!r}), Path({str(tiny_llama)!r}), threads=1, grad_accum=1)
        reg = Registry(Home(s.home), pepper="t")
        try:
            paths, _ = reg.create_tenant("acme"); reg.add_source(paths.tenant, "main", {str(repo)!r})
        except Exception:
            paths = reg.tenant("acme")
        print(train_tenant(s, paths, TrainOptions(rank=4, alpha=8, epochs=float(sys.argv[1]), replay_ratio=0.2,
                                                  progress=False))["epochs"])
    """)
    (tmp_path / "run.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), "3"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    work = home / "tenants" / "acme" / "work" / "train"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(work.glob("*.pt")):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(1.0)   # a few more steps, then kill it mid-run
    proc.kill()
    proc.wait()
    from codetailor.home import Home

    paths = Home(home).tenant("acme")
    assert AdapterStore(paths).versions() == []
    assert list(work.glob("*.pt"))

    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), "3"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    store = AdapterStore(paths)
    assert store.versions() == ["v0001"]
    meta = store.meta("v0001")
    assert meta.resumed_from_sequence > 0 and meta.epochs_seen == pytest.approx(3.0)
    assert not list(work.glob("*.pt"))
    assert not [p for p in paths.adapters_dir.iterdir() if p.name.startswith(".")]


def test_autocast_follows_the_chosen_dtype():
    from training.loop import autocast

    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16
    for off in (torch.float32, None):   # the float32 choice: no autocast at all
        with autocast(off):
            assert lin(x).dtype == torch.float32
