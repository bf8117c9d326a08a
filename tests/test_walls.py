"""The walls that keep the house easy to change, checked on the source (AST).

- retrieval imports none of training, evaluation, serving;
- training never imports serving;
- `vllm` is imported only inside engine/;
- only engine/resolver.py builds a LoRARequest;
- only codetailor/home.py joins tenant paths under the home ("tenants" literal);
- only AdapterStore names meta.json, and adapter-meta keys are spelled only in the artifact models;
- no package imports retrieval's private modules (manifest, segments) or names its files;
- only retrieval/git.py spawns git (it neutralises the commands a repository's config names).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["codetailor", "engine", "retrieval", "training", "evaluation", "serving"]
# spawning calls: subprocess.*, os.system / os.exec* / os.spawn* / os.popen, asyncio's subprocess helpers
_SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput", "system",
             "popen", "create_subprocess_exec", "create_subprocess_shell"}


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


def _string_constants(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_adapter_records_have_one_owner():
    """meta.json and state.json are named only by their owners, and their keys are spelled
    as strings in one place: the artifact models (codetailor/artifacts.py, which also
    migrates older key names). Everyone else reads and writes them as typed models."""
    owners = {"meta.json": {"codetailor/adapters.py"}, "state.json": {"codetailor/home.py"}}
    old_key_names = {"held_out", "base_model_checksum"}
    bad = []
    for pkg in PACKAGES:
        for p, t in _modules(pkg):
            rel = p.relative_to(ROOT).as_posix()
            consts = _string_constants(t)
            bad += [f"{rel} names {name}" for name, where in owners.items() if name in consts and rel not in where]
            if rel != "codetailor/artifacts.py" and consts & old_key_names:
                bad.append(f"{rel} spells adapter-meta keys {sorted(consts & old_key_names)}")
    _, adapters = next((p, t) for p, t in _modules("codetailor") if p.name == "adapters.py")
    assert not _imports(adapters) & {"json"}, "AdapterStore reads and writes its records only as artifacts"
    assert not bad, bad


# What other packages may import of retrieval: its package API and these modules. The manifest,
# segments and vector store are retrieval's private files (read through retrieval.files).
RETRIEVAL_API = {"retrieval", "retrieval.files", "retrieval.selection", "retrieval.embed", "retrieval.git",
                 "retrieval.symbol_table", "retrieval.symbol_context"}


def _full_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["training", "evaluation", "serving", "engine", "codetailor"])
def test_no_package_reads_retrievals_private_files(package):
    bad = []
    for p, t in _modules(package):
        private = {m for m in _full_imports(t) if m.split(".")[0] == "retrieval" and m not in RETRIEVAL_API}
        names = _string_constants(t) & {"manifest.json", "chunks.jsonl"}
        if private or names:
            bad.append(f"{p.relative_to(ROOT)}: {sorted(private | names)}")
    assert not bad, bad
def _names_git(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            v = n.value.strip()
            if v == "git" or v.startswith("git ") or v.endswith("/git") or "/git " in v:
                return True
    return False


def test_only_the_git_module_spawns_git():
    offenders = []
    for pkg in PACKAGES + ["bench", "scripts"]:
        if not (ROOT / pkg).is_dir():
            continue
        for p, t in _modules(pkg):
            if p.relative_to(ROOT).as_posix() == "retrieval/git.py":
                continue
            for node in ast.walk(t):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                    spawner = name in _SPAWNERS or name.startswith(("exec", "spawn"))
                    if spawner and _names_git(node):
                        offenders.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
