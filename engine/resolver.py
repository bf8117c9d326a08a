"""The adapter resolver: the ONE place that turns (tenant, version) into a LoRARequest.

Callers above the engine hold an `AdapterRef` (tenant, version, the version's
uid from its meta); they never name a path. The engine asks this resolver for
the LoRARequest, whose path comes from codetailor.home via AdapterStore.

vLLM caches adapter weights by `lora_int_id`, so an id must never stand for two
different weight sets. Ids come from one process-wide counter, keyed by
(tenant, version, uid): a newly activated version, or a recreated tenant's
`v0001` with a new uid, always gets a fresh id; the same immutable version keeps
its id for the life of the process.
"""

from __future__ import annotations

import itertools
import json
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from codetailor.adapters import AdapterStore
from codetailor.errors import CodetailorError
from codetailor.home import Home
from codetailor.names import TenantId
from engine.protocol import AdapterLoadError, AdapterRef

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Process-wide, so two resolvers (or two engines) in one process never hand out
# the same id for different weights.
_ids: dict[tuple[str, str, str], int] = {}
_counter = itertools.count(1)
_lock = threading.Lock()


def _int_id(ref: AdapterRef) -> int:
    key = (str(ref.tenant), ref.version, ref.uid)
    with _lock:
        if key not in _ids:
            _ids[key] = next(_counter)
        return _ids[key]


class AdapterResolver:
    def __init__(self, home: Home | Path, max_lora_rank: int | None = None):
        self.home = home if isinstance(home, Home) else Home(Path(home))
        self.max_lora_rank = max_lora_rank
        self._checked: set[int] = set()

    def _store(self, tenant: TenantId | str) -> AdapterStore:
        return AdapterStore(self.home.tenant(tenant))

    def ref_for(self, tenant: TenantId | str, version: str | None = None) -> AdapterRef | None:
        """The ref of `version` (None: the tenant's active version), or None when the
        tenant has no active adapter. An unknown explicit version raises NotFound."""
        store = self._store(tenant)
        if version is None:
            version = store.active()
            if version is None:
                return None
        uid = store.meta(version).uid
        if not uid:
            raise AdapterLoadError(f"adapter {tenant}/{version} has no uid in its meta")
        return AdapterRef(TenantId(str(tenant)), version, uid)

    def int_id(self, ref: AdapterRef) -> int:
        return _int_id(ref)

    def adapter_dir(self, ref: AdapterRef) -> Path:
        """Checked directory of a ref: it exists, is the same version (uid), and holds
        loadable PEFT files. Raises AdapterLoadError otherwise."""
        name = f"{ref.tenant}/{ref.version}"
        try:
            store = self._store(ref.tenant)
            path = store.path(ref.version)
            meta = store.meta(ref.version)
        except (CodetailorError, OSError, ValueError) as e:
            raise AdapterLoadError(f"adapter {name} is missing: {e}") from None
        if meta.uid != ref.uid:
            raise AdapterLoadError(f"adapter {name} was replaced (uid {meta.uid!r}, asked for {ref.uid!r})")
        if _int_id(ref) not in self._checked:
            self._check_files(name, path)
            self._checked.add(_int_id(ref))
        return path

    def _check_files(self, name: str, path: Path) -> None:
        try:
            config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AdapterLoadError(f"adapter {name} has no {ADAPTER_CONFIG}") from None
        except (ValueError, OSError) as e:
            raise AdapterLoadError(f"adapter {name}: unreadable {ADAPTER_CONFIG}: {e}") from None
        rank = config.get("r")
        if not isinstance(rank, int) or rank < 1:
            raise AdapterLoadError(f"adapter {name}: {ADAPTER_CONFIG} has no valid rank 'r'")
        if self.max_lora_rank is not None and rank > self.max_lora_rank:
            raise AdapterLoadError(f"adapter {name} has rank {rank} > engine.max_lora_rank {self.max_lora_rank}")
        _check_safetensors(name, path / ADAPTER_WEIGHTS)

    def lora_request(self, ref: AdapterRef) -> "LoRARequest":
        """Used only inside the engine."""
        from vllm.lora.request import LoRARequest

        path = self.adapter_dir(ref)
        return LoRARequest(f"{ref.tenant}/{ref.version}/{ref.uid[:8]}", _int_id(ref), str(path))


def _check_safetensors(name: str, path: Path) -> None:
    """Cheap structural check (header only) so a truncated or garbage file fails here
    with a clear message instead of deep inside the engine."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("bad header length")
            header = json.loads(f.read(header_len))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if not ends or 8 + header_len + max(ends) > size:
            raise ValueError("file is truncated")
    except FileNotFoundError:
        raise AdapterLoadError(f"adapter {name} has no {ADAPTER_WEIGHTS}") from None
    except (ValueError, KeyError, TypeError, struct.error, OSError) as e:
        raise AdapterLoadError(f"adapter {name}: corrupt {ADAPTER_WEIGHTS} ({e})") from None
