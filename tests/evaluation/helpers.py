"""Small builders shared by the evaluation tests (no engine, no model weights)."""

from __future__ import annotations

import json
from pathlib import Path

from codetailor.adapters import AdapterStore
from codetailor.artifacts import AdapterMeta
from codetailor.config import load_settings
from codetailor.tenants import Registry
from codetailor.home import Home


def fake_model_dir(root: Path, sha: str = "a" * 64) -> Path:
    """A directory resolve_base_model accepts, whose checksum model_checksum reads from its info file."""
    d = root / f"model-{sha[:6]}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")
    # Only the special tokens: enough for the prompt template (codetailor.model.prompt_template).
    (d / "tokenizer.json").write_text(json.dumps({"added_tokens": [
        {"id": i, "content": t} for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                                      "<repo_name>", "<reponame>", "<file_sep>"])]}))
    (d / "codetailor-model.json").write_text(json.dumps({"parameters": 1, "sha256": sha}))
    return d


def settings_with(home: Path, model_dir: Path, **evaluation):
    return load_settings(home=home, model={"base": str(model_dir)}, evaluation=evaluation)


def tenant(settings, name: str = "acme"):
    paths, _ = Registry(Home(settings.home), pepper="test").create_tenant(name)
    return paths


def add_adapter(paths, *, base_sha: str = "a" * 64, cqi: float | None = None,
                public_loss_change: float | None = 0.01, extra: dict | None = None) -> str:
    store = AdapterStore(paths)
    with store.new_version() as staged:
        meta = {"base_model": {"checksum": base_sha}, "public_loss_change": public_loss_change, **(extra or {})}
        if cqi is not None:
            meta["evaluation"] = {"cqi": cqi, "eval_id": "test"}
        staged.meta = AdapterMeta.from_dict(meta)  # as an unversioned file would read
    return staged.version
