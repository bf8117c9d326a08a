"""bench/train_bench.py --device cuda: its model shapes are the catalog's, and its path through the
product's batched loop runs without the configuration stack (the GPU machine has no pydantic)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_each_shape_has_its_catalog_entrys_parameters():
    import torch
    from transformers import AutoModelForCausalLM

    from bench.model_shapes import H200_ANCHOR_TOKENS_PER_S, SHAPES, build_config
    from codetailor import catalog

    assert set(SHAPES) == set(catalog.names()) == set(H200_ANCHOR_TOKENS_PER_S)
    for name in SHAPES:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(build_config(name))
        entry = catalog.get(name)
        assert type(model).__name__ == entry.architecture
        assert sum(p.numel() for p in model.parameters()) == entry.parameters, name


@pytest.mark.timeout(300)
def test_the_gpu_path_runs_without_pydantic_on_a_tiny_model(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})

        class Absent:   # what the GPU machine lacks
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pydantic", "pydantic_settings", "gguf", "tree_sitter"):
                    raise ImportError("not on the GPU machine: " + name)
        sys.meta_path.insert(0, Absent())
        import torch
        torch.set_num_threads(1)
        from transformers import LlamaConfig
        from bench.train_bench import bench_model
        cfg = LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
        print(json.dumps(bench_model(cfg, "cpu", torch.float32, seq_len=64, rows=4, seconds=1.0, warmup=0.2)))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["steps"] >= 1 and run["tokens"] % 64 == 0 and run["tokens_per_second"] > 0
    assert run["loss_check"]["relative_difference"] < 1e-4   # float32: the batched loss is the per-sequence one
