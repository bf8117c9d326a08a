"""One end-to-end evaluation through the real vLLM engine, real index, real adapter.

A tiny repository is indexed (BM25 + vectors), a random LoRA adapter of the real
base model is published as a version, and `base,rag,ft,ft+rag` run on a few
tasks. Numbers on 6 tasks mean nothing; the test checks the path: every system
produced completions through the engine, metrics and CQI intervals are well
formed, records and the report are written.
"""

from __future__ import annotations

import pytest

from codetailor.adapters import AdapterStore
from codetailor.artifacts import AdapterMeta, BaseModelRecord, SplitRecord
from codetailor.config import load_settings
from codetailor.home import Home
from codetailor.model import model_checksum
from codetailor.tenants import Registry
from tests.evaluation.test_pipeline import MODULE

pytestmark = [pytest.mark.engine, pytest.mark.model, pytest.mark.slow]

OTHER = '''from pkg.mod0 import load_items, compute_total


def summarise(path, price):
    items = load_items(path, strict=True)
    totals = [compute_total(item.count, price) for item in items]
    return sum(totals), len(items)


def report(path, price):
    total, count = summarise(path, price)
    print(f"{count} items, total {total}")
    return total
'''


def _random_adapter(base_model_path, out_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(out_dir)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, base_model_path, engine, engine_home):
    """A tenant in the shared engine's home (so its resolver finds the adapter)."""
    root = tmp_path_factory.mktemp("e2e")
    settings = load_settings(home=engine_home, model={"base": str(base_model_path)},
                             engine={"max_model_len": 2048, "max_lora_rank": 16},
                             prompt={"budget_tokens": 768},
                             evaluation={"n": 6, "bootstrap_samples": 200, "max_new_tokens": 24,
                                         "retrieval_mode": "bm25"})
    repo = root / "repo" / "pkg"
    repo.mkdir(parents=True)
    for i in range(5):
        (repo / f"mod{i}.py").write_text(MODULE.replace("Inventory", f"Inventory {i}"))
    (repo / "report.py").write_text(OTHER)
    registry = Registry(Home(settings.home), pepper="e2e")
    paths, _ = registry.create_tenant("eval-acme")
    store = AdapterStore(paths)
    with store.new_version() as staged:
        _random_adapter(base_model_path, staged.dir)
        staged.meta = AdapterMeta(base_model=BaseModelRecord(checksum=model_checksum(base_model_path)),
                                  public_loss_change=0.0,
                                  split=SplitRecord(heldout_files=("pkg/report.py", "pkg/mod3.py")))
    version = staged.version
    import retrieval  # after the engine is up (bm25s/numba before vLLM broke its start)

    retrieval.index_source(settings, paths, root / "repo")
    return settings, paths, engine, version


def test_eval_all_systems_through_the_engine(e2e, tmp_path):
    from evaluation import evaluate

    settings, paths, engine, version = e2e
    result = evaluate(settings, paths, systems="base,rag,ft,ft+rag", engine=engine, progress=False,
                      report_dir=tmp_path / "report")
    assert set(result["systems"]) == {"base", "rag", "ft", "ft+rag"}
    assert result["adapter"] == version and result["n"] == 6
    assert {t["path"] for t in result["tasks"]} <= {"pkg/report.py", "pkg/mod3.py"}
    for system, m in result["systems"].items():
        for k in ("exact_match", "edit_similarity", "codebleu", "identifier_match"):
            assert 0 <= m[k] <= 1, (system, k)
    for system, c in result["cqi"].items():
        assert 1 <= c["low"] <= c["value"] <= c["high"] <= 10
    preds = {s: [t["predictions"][s] for t in result["tasks"]] for s in result["systems"]}
    assert sum(1 for p in preds["base"] if p.strip()) >= 3           # the model really completed
    assert preds["ft"] != preds["base"]                               # the random adapter changed outputs
    rag_tasks = [t for t in result["tasks"] if t["snippets"].get("rag")]
    assert rag_tasks, "retrieval put snippets into the rag prompts"
    for t in rag_tasks:  # never the task's own file
        assert all(not s.startswith(t["path"] + ":") for s in t["snippets"]["rag"])
    assert AdapterStore(paths).meta(version).evaluation.eval_id == result["eval_id"]
    assert (tmp_path / "report" / "report.md").is_file()
