"""Render the Helm chart offline (helm-python-sdk: Helm's own library) and validate what comes out:
built-in kinds with kubernetes-validate (strict, pinned Kubernetes version), KubeRay kinds against the
vendored CRD schemas (deploy/schemas/kuberay/) with unknown fields rejected as the API server would."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

from tests.ops.promql import ROOT

CHART = ROOT / "helm" / "codetailor"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
KUBE_VERSION = "1.31.0"
CRD_DIR = ROOT / "deploy" / "schemas" / "kuberay"
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def ci_values() -> dict:
    return yaml.safe_load(CI_VALUES.read_text(encoding="utf-8"))


def render(values: dict | None = None, name: str = "codetailor", namespace: str = "codetailor") -> list[dict]:
    """Every object the chart renders, in template order."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=name, namespace=namespace)
    docs = []
    for path in sorted(files):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(files[path]) if d)
    return docs


def _strict(schema):
    """Reject unknown fields wherever the CRD lists the fields (the API server prunes/denies them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=None)
def crd_schema(kind: str, version: str = "v1") -> dict:
    crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return _strict(v["schema"]["openAPIV3Schema"])
    raise KeyError(f"{kind} {version} not in {CRD_FILES[kind]}")


def validate_crd(doc: dict) -> None:
    import jsonschema

    version = doc["apiVersion"].split("/")[1]
    jsonschema.Draft7Validator(crd_schema(doc["kind"], version)).validate(doc)


def validate_builtin(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(copy.deepcopy(doc), KUBE_VERSION, strict=True)


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) for every pod template an object carries, KubeRay groups included."""
    kind, spec = doc["kind"], doc.get("spec", {})
    out = []
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        out.append((f"{kind}/{doc['metadata']['name']}", spec["template"]["spec"]))
    if kind == "CronJob":
        out.append((f"CronJob/{doc['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]))

    def cluster(c: dict, where: str):
        out.append((f"{where}/head", c["headGroupSpec"]["template"]["spec"]))
        for g in c.get("workerGroupSpecs", []):
            out.append((f"{where}/{g['groupName']}", g["template"]["spec"]))

    if kind == "RayService":
        cluster(spec["rayClusterConfig"], f"RayService/{doc['metadata']['name']}")
    if kind == "RayJob":
        if "rayClusterSpec" in spec:
            cluster(spec["rayClusterSpec"], f"RayJob/{doc['metadata']['name']}")
        if "submitterPodTemplate" in spec:
            out.append((f"RayJob/{doc['metadata']['name']}/submitter", spec["submitterPodTemplate"]["spec"]))
    return out


def worker_group(doc: dict, name: str) -> dict:
    return next(g for g in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == name)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def chart_dir() -> Path:
    return CHART
