"""The walls that keep the house easy to change, checked on the source (AST).

- retrieval imports none of training, evaluation, serving;
- training never imports serving;
- `vllm` is imported only inside engine/;
- only engine/resolver.py builds a LoRARequest;
- only codetailor/home.py joins tenant paths under the home ("tenants" literal).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["codetailor", "engine", "retrieval", "training", "evaluation", "serving"]


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "_gen" in path.parts:
            continue
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [
    ("retrieval", {"training", "evaluation", "serving"}),
    ("training", {"serving"}),
    ("engine", {"serving", "training", "evaluation", "retrieval"}),
    ("codetailor", {"vllm"}),
])
def test_import_walls(package, forbidden):
    bad = [f"{p.relative_to(ROOT)} imports {sorted(_imports(t) & forbidden)}"
           for p, t in _modules(package) if _imports(t) & forbidden]
    # The CLI and the demo compose every stage; they are the top of the house.
    bad = [b for b in bad if not b.startswith(("codetailor/cli/", "codetailor/demo.py"))]
    assert not bad, bad


def test_vllm_only_in_engine():
    bad = [str(p.relative_to(ROOT)) for pkg in PACKAGES if pkg != "engine"
           for p, t in _modules(pkg) if "vllm" in _imports(t)]
    assert not bad, bad


def test_only_the_resolver_builds_lora_requests():
    builders = []
    for pkg in PACKAGES:
        for p, t in _modules(pkg):
            for node in ast.walk(t):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                    if name == "LoRARequest":
                        builders.append(str(p.relative_to(ROOT)))
    assert set(builders) <= {"engine/resolver.py"}, builders


def test_only_home_lays_out_tenant_directories():
    offenders = []
    for pkg in PACKAGES:
        for p, t in _modules(pkg):
            if p.relative_to(ROOT).as_posix() == "codetailor/home.py":
                continue
            for node in ast.walk(t):
                if isinstance(node, ast.Constant) and node.value in ("tenants", "tenants/"):
                    offenders.append(str(p.relative_to(ROOT)))
    assert not offenders, offenders
