"""The fetched base model loads with transformers and generates."""

import json

import pytest


@pytest.mark.model
def test_fetched_model_generates_greedily(base_model_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((base_model_path / "codetailor-model.json").read_text())
    assert info["parameters"] == 134_515_008
    tok = AutoTokenizer.from_pretrained(base_model_path)
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    ids = tok("def add(a, b):\n    return", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    text = tok.decode(out[0][ids["input_ids"].shape[1]:])
    assert text.startswith(" a + b")
    # The repository-format tokens the prompt format relies on are single tokens.
    assert tok.convert_tokens_to_ids(["<repo_name>", "<file_sep>"]) == [3, 5]
    assert tok("<repo_name>x<file_sep>a.py\n")["input_ids"][0] == 3


def test_model_fetch_is_idempotent(tmp_path, monkeypatch):
    """A published model directory is reused without downloading."""
    from codetailor.home import Home
    from codetailor.model import fetch_default_model

    home = Home(tmp_path)
    d = home.model_dir("smollm2-135m-instruct")
    d.mkdir(parents=True)
    (d / "codetailor-model.json").write_text(json.dumps({"parameters": 1, "sha256": "abc"}))
    monkeypatch.setattr("codetailor.model.assemble", lambda *a: pytest.fail("downloaded again"))
    assert fetch_default_model(home).sha256 == "abc"


def test_unfetched_default_model_is_a_clear_error(tmp_home):
    from codetailor.config import load_settings
    from codetailor.errors import NotFound
    from codetailor.model import resolve_base_model

    with pytest.raises(NotFound, match="model fetch"):
        resolve_base_model(load_settings())
