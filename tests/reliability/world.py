"""A many-tenant world for the isolation checks (used by tests/reliability and
bench/reliability.py): tenants whose repos share file names and identifiers,
each with a canary planted in its repo (so in its index), its own small LoRA
adapter, and an active adapter version number no other tenant has (so the
response's `adapter_version` names the tenant whose adapter generated it).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

SHARED_FUNCS = ("load_config", "parse_record", "normalise_name", "merge_totals", "render_report")


@dataclass
class TenantWorld:
    name: str
    repo: Path
    canary: str
    version: str
    dev_key: str
    admin_key: str
    locations: set[tuple[str, int, int]] = field(default_factory=set)   # chunk locations in its index


def canary_for(tenant: str) -> str:
    return f"CANARY_{tenant.upper()}_{secrets.token_hex(6)}"


def write_repo(root: Path, tenant: str, index: int, canary: str) -> None:
    """Same file names and function names in every tenant; bodies, lengths and the canary differ."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "utils").mkdir(exist_ok=True)
    # a header whose length differs per tenant, so equal-looking chunks sit at different lines
    lines = ([f'"""Shared helpers of {tenant}.'] + [f"revision {r}" for r in range(index + 1)]
             + ['"""', "", f'TENANT_MARK = "{canary}"', ""])
    for k, fn in enumerate(SHARED_FUNCS):
        lines += [f"def {fn}(path, *, strict=False):",
                  f'    """{fn} for {tenant}: keeps {canary} close to the shared names."""',
                  f"    value = {index * 7 + k}",
                  *[f"    value = value * {j + 2} + len(path)  # step {j}" for j in range(index % 3 + 1)],
                  f'    return {{"tenant": "{canary}", "value": value, "strict": strict}}', ""]
    (root / "common.py").write_text("\n".join(lines) + "\n")
    (root / "utils" / "helpers.py").write_text("\n".join(
        [f"# helpers of {tenant}, revision {r}" for r in range(index + 1)]  # line numbers differ per tenant
        + [f"from common import {', '.join(SHARED_FUNCS)}", "", f"SECRET_SAUCE = '{canary}'", ""]
        + [f"def use_{fn}(x):\n    # {canary}\n    return {fn}(x, strict={bool(index % 2)})\n" for fn in SHARED_FUNCS]
))
    (root / f"{tenant}_only.py").write_text(f"def only_{tenant}():\n    return '{canary}'\n")


def publish_unique_version(paths, base_model: Path, peft_model, seed: int, number: int) -> str:
    """Publish the peft model's adapter (re-initialised from `seed`) as version v{number}:
    placeholder versions are created first and removed after, so only v{number} remains."""
    import torch

    from codetailor.adapters import AdapterStore
    from codetailor.artifacts import AdapterMeta, BaseModelRecord, EvaluationSummary
    from codetailor.model import model_checksum

    store = AdapterStore(paths)
    placeholders = []
    while (int(store.latest()[1:]) if store.latest() else 0) < number - 1:
        with store.new_version() as staged:
            staged.meta = AdapterMeta()
        placeholders.append(staged.version)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    with store.new_version() as staged:
        peft_model.save_pretrained(staged.dir)
        staged.meta = AdapterMeta(base_model=BaseModelRecord(path=str(base_model), checksum=model_checksum(base_model)),
                                  evaluation=EvaluationSummary(cqi=8.0), public_loss_change=0.0)
    version = staged.version
    for v in placeholders:
        shutil.rmtree(store.path(v))
    store.set_active(version)
    return version


def build_world(settings, base_model: Path, repos_root: Path, n: int, prefix: str = "iso",
                first_version: int = 11) -> dict[str, TenantWorld]:
    """Create `n` tenants (registry, repo, BM25+vector index, adapter) in settings.home."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import retrieval
    from codetailor.home import Home
    from codetailor.tenants import Registry
    from retrieval.search import load_state

    registry = Registry(Home(settings.home), settings.key_pepper)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    world = {}
    for i in range(n):
        name = f"{prefix}{i:02d}"
        paths, admin_key = registry.create_tenant(name)
        dev_key = registry.create_key(name, "developer")
        canary = canary_for(name)
        repo = repos_root / name
        write_repo(repo, name, i, canary)
        registry.add_source(paths.tenant, "main", str(repo))
        retrieval.index_source(settings, paths, repo)
        version = publish_unique_version(paths, base_model, peft_model, seed=1000 + i, number=first_version + i)
        state = load_state(paths)
        locations = {(state.segments[s].rows[r]["path"], state.segments[s].rows[r]["start_line"],
                      state.segments[s].rows[r]["end_line"]) for s, r in state.by_id.values()}
        world[name] = TenantWorld(name, repo, canary, version, dev_key, admin_key, locations)
    return world


def request_for(rng, world: dict[str, TenantWorld], max_tokens: int) -> tuple[str, dict]:
    """A random tenant and a prompt built on the identifiers every tenant shares."""
    tenant = rng.choice(sorted(world))
    fn = rng.choice(SHARED_FUNCS)
    style = rng.randrange(3)
    if style == 0:
        prefix = f"from common import {fn}\n\ndef caller(p):\n    result = {fn}("
    elif style == 1:
        prefix = f"def {fn}(path, *, strict=False):\n    value = "
    else:
        prefix = f"# uses {fn} and TENANT_MARK\nimport utils.helpers\n\nx = utils.helpers.use_{fn}("
    return tenant, {"prefix": prefix, "suffix": rng.choice(["", ")\n", "\nprint(x)\n"]),
                    "path": rng.choice(["common.py", "utils/helpers.py", "main.py"]), "max_tokens": max_tokens}


def leaks(world: dict[str, TenantWorld], tenant: str, response: dict) -> list[str]:
    """What in `response` does not belong to `tenant` (empty when isolated)."""
    me = world[tenant]
    problems = []
    if response["adapter_version"] != me.version:
        problems.append(f"adapter_version {response['adapter_version']!r} != {me.version!r}")
    if response["system"] not in ("ft+rag", "ft"):
        problems.append(f"system {response['system']!r}")
    for s in response["snippets"]:
        loc = (s["path"], s["start_line"], s["end_line"])
        if loc not in me.locations:
            problems.append(f"snippet {loc} is not in {tenant}'s index")
    for other in world.values():
        if other.name != tenant and other.canary in response.get("text", ""):
            problems.append(f"text carries {other.name}'s canary")
    return problems
