"""Dockerfiles, checked statically (no Docker engine here): multi-stage, pinned base images, non-root,
stubs generated at build, entrypoint `codetailor`, the model not baked in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.ops.promql import ROOT

DOCKER = ROOT / "deploy" / "docker"
IMAGES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}


def parse(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuations joined, comments and blank lines dropped."""
    out, buf = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    return out


def stages(instrs):
    """[(from-args, [instructions])] per build stage, with global ARG defaults applied to FROM."""
    args, result = {}, []
    for instr, rest in instrs:
        if instr == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instr == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            result.append((image, []))
        elif result:
            result[-1][1].append((instr, rest))
    return result


@pytest.fixture(params=sorted(IMAGES))
def image(request):
    return request.param, parse(IMAGES[request.param])


def test_parser_reads_continuations_and_comments(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text("# c\nFROM a:1 AS b\nRUN x \\\n # inner\n && y\nUSER 1\n")
    assert parse(f) == [("FROM", "a:1 AS b"), ("RUN", "x  && y"), ("USER", "1")]


def test_multi_stage_with_pinned_bases(image):
    kind, instrs = image
    st = stages(instrs)
    assert len(st) >= 2, f"{kind}: not multi-stage"
    for frm, _ in st:
        ref = frm.split()[0]
        assert "$" not in ref, f"{kind}: unresolved base {ref}"
        if "@sha256:" in ref:
            continue
        name, _, tag = ref.rpartition(":")
        assert name and "/" not in tag, f"{kind}: base image {ref} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{kind}: base {ref} is not pinned to a version"
    # the runtime stage takes the built environment from the build stage, not a compiler
    runtime = st[-1][1]
    assert any(i == "COPY" and a.startswith("--from=build") for i, a in runtime)
    assert not any(i == "RUN" and "build-essential" in a for i, a in runtime)


def test_runs_as_non_root(image):
    kind, instrs = image
    runtime = stages(instrs)[-1][1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, f"{kind}: final stage has no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"{kind}: USER {users[-1]} (numeric non-root needed for runAsNonRoot)"
    # the chart's securityContext uses the same uid
    assert int(user) == 10001


def test_entrypoint_is_codetailor(image):
    kind, instrs = image
    entry = [a for i, a in stages(instrs)[-1][1] if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["codetailor"], f"{kind}: ENTRYPOINT {entry}"


def test_proto_stubs_generated_at_build(image):
    kind, instrs = image
    build = stages(instrs)[0][1]
    assert any(i == "RUN" and "scripts/gen_proto.sh" in a for i, a in build), f"{kind}: stubs not generated"
    assert (ROOT / "scripts" / "gen_proto.sh").is_file()


def test_model_not_baked_in(image):
    kind, instrs = image
    for i, a in instrs:
        assert not (i == "RUN" and "model fetch" in a), f"{kind}: the model is fetched at build time"
        assert not (i in ("COPY", "ADD") and (".home" in a or "models" in a)), f"{kind}: copies a model: {a}"
    assert any(i == "VOLUME" and "/var/lib/codetailor" in a for i, a in instrs)


def test_copied_sources_exist_and_context_is_filtered(image):
    kind, instrs = image
    for i, a in stages(instrs)[0][1]:
        if i == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                if "*" not in src:
                    assert (ROOT / src).exists(), f"{kind}: COPY {src} does not exist"
    ignore = [ln for ln in (DOCKER / f"Dockerfile.{kind}.dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*", "the build context should start from nothing and whitelist sources"
    assert "!.home/" not in ignore and "serving/_gen/" in ignore


def test_engine_flavour(image):
    kind, instrs = image
    runs = " ".join(a for i, a in instrs if i == "RUN")
    froms = " ".join(f for f, _ in stages(instrs))
    if kind == "cpu":
        assert '".[cpu]"' in runs and "torchvision" in runs
    else:
        assert '".[gpu]"' in runs and "nvidia/cuda:" in froms and re.search(r"vllm==\$\{VLLM_VERSION\}", runs)
        assert re.search(r"ARG VLLM_VERSION=\d+\.\d+\.\d+", IMAGES["gpu"].read_text())


def test_runtime_has_git_for_tenant_repositories(image):
    """Index and train jobs run in these images and read tenants' repositories with git (ssh or https)."""
    kind, instrs = image
    runtime = stages(instrs)[-1][1]
    installed = " ".join(a for i, a in runtime if i == "RUN" and "apt-get install" in a).split()
    assert {"git", "openssh-client", "ca-certificates"} <= set(installed)
