"""Structural checks on the container and Kubernetes manifests the deployment phase writes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult


class K8sParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str = "deployment/k8s"
    kinds: list[str] = Field(default_factory=lambda: ["Deployment", "Service",
                                                      "HorizontalPodAutoscaler"])
    hpa_min: int = 3
    hpa_max: int = 10
    hpa_cpu_percent: int = 70


def _hpa_cpu(spec: dict[str, Any]) -> Any:
    if "targetCPUUtilizationPercentage" in spec:
        return spec["targetCPUUtilizationPercentage"]
    for m in spec.get("metrics") or []:
        res = (m or {}).get("resource") or {}
        if res.get("name") == "cpu":
            return (res.get("target") or {}).get("averageUtilization")
    return None


def k8s_manifests(ctx: CheckContext, params: K8sParams) -> CheckResult:
    import yaml

    folder = ctx.workspace / params.folder
    files = sorted(folder.rglob("*.y*ml")) if folder.is_dir() else []
    if not files:
        return result("failed", f"no YAML manifests under {params.folder}/")
    docs: list[tuple[str, dict[str, Any]]] = []
    for f in files:
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            loaded = list(yaml.safe_load_all(f.read_text(encoding="utf-8")))
        except yaml.YAMLError as e:
            return result("failed", f"{rel} is not valid YAML: {str(e).splitlines()[0]}")
        docs += [(rel, d) for d in loaded if isinstance(d, dict)]
    kinds = sorted({str(d.get("kind")) for _, d in docs})
    problems = [f"no {k}" for k in params.kinds if k not in kinds]
    checked = 0
    for rel, d in docs:
        name = f"{rel}:{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        if d.get("kind") == "Deployment":
            checked += 1
            pod = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
            containers = pod.get("containers") or []
            if not containers:
                problems.append(f"{name}: no containers")
            for c in containers:
                res = c.get("resources") or {}
                for part in ("requests", "limits"):
                    got = res.get(part) or {}
                    if not ("cpu" in got and "memory" in got):
                        problems.append(f"{name}: container {c.get('name')} has no cpu+memory "
                                        f"{part}")
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        problems.append(f"{name}: container {c.get('name')} has no {probe}")
        if d.get("kind") == "HorizontalPodAutoscaler":
            spec = d.get("spec") or {}
            got = (spec.get("minReplicas"), spec.get("maxReplicas"), _hpa_cpu(spec))
            want = (params.hpa_min, params.hpa_max, params.hpa_cpu_percent)
            if got != want:
                problems.append(f"{name}: min/max/cpu% = {got}, expected {want}")
    ev = {"files": [f.relative_to(ctx.workspace).as_posix() for f in files], "kinds": kinds,
          "deployments": checked}
    if problems:
        return result("failed", f"{len(problems)} problem(s): {'; '.join(problems[:6])}", **ev,
                      problems=problems)
    return result("passed", f"{len(files)} manifest file(s), {checked} Deployment(s) with "
                  f"resources and probes, HPA {params.hpa_min}-{params.hpa_max} at "
                  f"{params.hpa_cpu_percent}% CPU", **ev)
