"""The model catalog: pins, part assembly and refusals (no network: parts come from a folder)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import get_args

import pytest

from codetailor import catalog
from codetailor.catalog import CatalogEntry, Family, Part
from codetailor.config import DEFAULT_MODEL
from codetailor.errors import CodetailorError, NotFound
from codetailor.home import Home
from codetailor.model import assemble, check_gguf, fetch_model, folder_source

PART_A, PART_B = b"GGUF" + bytes(range(256)) * 3, b"second part \x00\x01" * 50


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _entry(**over) -> CatalogEntry:
    parts = tuple(Part(f"synthetic-part{i}==1.0", f"synthetic_part{i}/data/part0{i}.bin", "0" * 64, len(b), _sha(b))
                  for i, b in ((1, PART_A), (2, PART_B)))
    base = CatalogEntry(name="synthetic-two-part", family="qwen2.5-coder", upstream="none", licence="Apache-2.0",
                        parameters=1, architecture="Qwen2ForCausalLM", gguf_architecture="qwen2",
                        gguf_name="Synthetic", sha256=_sha(PART_A + PART_B), parts=parts, store_dtype="bfloat16",
                        fim=True)
    return replace(base, **over)


@pytest.fixture
def parts_dir(tmp_path):
    d = tmp_path / "mirror"
    d.mkdir()
    (d / "part01.bin").write_bytes(PART_A)
    (d / "part02.bin").write_bytes(PART_B)
    return d


def _fetch(tmp_path, parts_dir, entry=None):
    return fetch_model(Home(tmp_path / "home"), source=folder_source(parts_dir), entry=entry or _entry())


def test_two_parts_assemble_in_order_and_check(tmp_path, parts_dir):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    said = []
    out = assemble(_entry(), folder_source(parts_dir), scratch, said.append)
    assert out.read_bytes() == PART_A + PART_B
    assert [p.name for p in scratch.iterdir()] == [out.name]  # parts are removed once appended
    assert said == ["part 1/2: synthetic-part1==1.0", "part 2/2: synthetic-part2==1.0"]


def test_a_corrupt_part_is_refused(tmp_path, parts_dir):
    (parts_dir / "part02.bin").write_bytes(PART_B[:-1] + b"X")  # same size, other bytes
    with pytest.raises(CodetailorError, match="checksum mismatch for part synthetic-part2"):
        _fetch(tmp_path, parts_dir)
    assert not (tmp_path / "home" / "models" / "synthetic-two-part").exists()


def test_a_truncated_part_is_refused(tmp_path, parts_dir):
    (parts_dir / "part01.bin").write_bytes(PART_A[:-7])
    with pytest.raises(CodetailorError, match="synthetic-part1==1.0 has .* bytes, expected"):
        _fetch(tmp_path, parts_dir)


def test_a_missing_part_is_refused(tmp_path, parts_dir):
    (parts_dir / "part02.bin").unlink()
    with pytest.raises(NotFound, match="part synthetic-part2==1.0 is missing"):
        _fetch(tmp_path, parts_dir)


def test_a_wrong_assembled_hash_is_refused(tmp_path, parts_dir):
    with pytest.raises(CodetailorError, match="checksum mismatch for the assembled synthetic-two-part GGUF"):
        _fetch(tmp_path, parts_dir, _entry(sha256="f" * 64))


def test_parts_in_the_wrong_order_are_refused(tmp_path, parts_dir):
    entry = _entry()
    swapped = replace(entry, parts=(entry.parts[1], entry.parts[0]))
    with pytest.raises(CodetailorError, match="assembled"):
        _fetch(tmp_path, parts_dir, swapped)


def _write_gguf(path, arch: str, name: str) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_metadata_must_name_the_catalog_model(tmp_path):
    entry = _entry()
    good, other_arch, other_name = (tmp_path / f"{n}.gguf" for n in ("good", "arch", "name"))
    _write_gguf(good, "qwen2", "Synthetic")
    _write_gguf(other_arch, "llama", "Synthetic")
    _write_gguf(other_name, "qwen2", "Something Else")
    check_gguf(good, entry)
    with pytest.raises(CodetailorError, match="general.architecture='llama', expected 'qwen2'"):
        check_gguf(other_arch, entry)
    with pytest.raises(CodetailorError, match="general.name='Something Else'"):
        check_gguf(other_name, entry)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(CodetailorError, match="not a readable GGUF"):
        check_gguf(tmp_path / "junk.gguf", entry)


def test_every_entry_is_fully_pinned():
    for e in catalog.entries():
        assert e.licence == "Apache-2.0" and e.parts
        digests = [e.sha256] + [p.sha256 for p in e.parts] + [p.wheel_sha256 for p in e.parts]
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests), e.name
        assert all(p.size > 0 for p in e.parts)
    q05 = catalog.get("qwen2.5-coder-0.5b")
    assert q05.bytes == 491_400_064 and len(q05.parts) == 6
    assert q05.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert catalog.get("qwen2.5-coder-1.5b").bytes == 1_117_320_768
    # The default keeps the checksum adapters trained on it recorded: its wheel's.
    smol = catalog.get("smollm2-135m-instruct")
    assert smol.checksum == smol.parts[0].wheel_sha256


def test_catalog_file_fits_the_types():
    """catalog.toml is data: the Literal fields and the default model are checked here, not by Python."""
    for e in catalog.entries():
        assert e.family in get_args(Family) and e.store_dtype in ("float32", "bfloat16"), e.name
        assert isinstance(e.fim, bool) and isinstance(e.parameters, int) and isinstance(e.parts, tuple)
    assert catalog.get(DEFAULT_MODEL) == catalog.entries()[0]
    assert len(set(catalog.names())) == len(catalog.entries())


def test_unknown_catalog_name_lists_the_known_ones():
    with pytest.raises(NotFound, match="qwen2.5-coder-0.5b"):
        catalog.get("gpt-17")


def test_model_list_json(tmp_home, capsys):
    from codetailor.cli import main

    assert main(["model", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [r["name"] for r in rows] == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert set(rows[0]) == {"name", "family", "parameters", "bytes", "licence", "fim", "fetched", "default",
                            "configured"}
    assert [r["default"] for r in rows] == [True, False, False]
    assert [r["fim"] for r in rows] == [False, True, True]
    assert not any(r["fetched"] for r in rows)


def test_model_fetch_of_an_unknown_name_is_one_line(tmp_home, capsys):
    from codetailor.cli import main

    assert main(["model", "fetch", "gpt-17", "--json"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("codetailor: error: no model 'gpt-17' in the catalog") and err.count("\n") == 1


def test_resolving_an_unfetched_catalog_model_names_the_fetch_command(tmp_home):
    from codetailor.config import load_settings
    from codetailor.model import resolve_base_model

    with pytest.raises(NotFound, match="model fetch qwen2.5-coder-0.5b"):
        resolve_base_model(load_settings(model={"base": "qwen2.5-coder-0.5b"}))


@pytest.mark.parametrize("bad", ["..", "a..b", ".hidden", "a/b", "Qwen", ""])
def test_model_directory_names_refuse_path_tricks(tmp_path, bad):
    from codetailor.errors import InvalidName

    with pytest.raises(InvalidName):
        Home(tmp_path).model_dir(bad)
    assert Home(tmp_path).model_dir("qwen2.5-coder-0.5b").name == "qwen2.5-coder-0.5b"


def _tiny_qwen2():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    cfg.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_()
    return model


def test_rebuild_keeps_qwen2_biases_and_its_separate_output_head():
    import torch

    from codetailor.model import rebuild

    src = _tiny_qwen2()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    plain = rebuild(state, src.config, "tiny")
    assert type(plain).__name__ == "Qwen2ForCausalLM"
    got = plain.state_dict()
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert any(k.endswith("q_proj.bias") for k in got)
    assert plain.lm_head.weight.data_ptr() != plain.model.embed_tokens.weight.data_ptr()


def test_rebuild_refuses_weights_that_do_not_fit_the_architecture():
    from codetailor.model import rebuild

    src = _tiny_qwen2()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    missing = {k: v for k, v in state.items() if not k.endswith("k_proj.bias")}
    with pytest.raises(CodetailorError, match="do not fit Qwen2ForCausalLM"):
        rebuild(missing, src.config, "tiny")
    as_llama = src.config.to_dict() | {"architectures": ["LlamaForCausalLM"]}
    from transformers import LlamaConfig

    with pytest.raises(CodetailorError, match="do not fit LlamaForCausalLM"):  # Llama has no q/k/v bias
        rebuild(state, LlamaConfig(**{k: v for k, v in as_llama.items() if k != "model_type"}), "tiny")
