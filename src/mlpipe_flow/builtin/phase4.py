"""Built-in phase 4 (deployment): the serving API, its container, Kubernetes manifests, CI/CD,
A/B testing, the deployment guide and the API tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mlpipe_flow.builtin import BuiltinTask
from mlpipe_flow.builtin.workspace_io import (
    copy_templates,
    feature_types,
    read_meta,
    read_spec,
    render_doc,
    write_text,
    write_yaml,
)

APP = "model-api"
IMAGE = f"registry.example.com/{APP}"
REQUIREMENTS = ["scikit-learn", "pandas", "joblib", "fastapi", "uvicorn[standard]",
                "prometheus-client", "pydantic>=2", "onnxruntime", "skl2onnx", "onnx"]
INPUT_LOG = "/app/data/production"  # where the image's API logs its sampled inputs


def _pinned(names: list[str]) -> list[str]:
    from importlib import metadata

    out = []
    for spec in names:
        base = spec.split("[")[0].split(">")[0]
        try:
            out.append(f"{spec.split('>')[0]}=={metadata.version(base)}")
        except metadata.PackageNotFoundError:
            out.append(spec)
    return out


def deployment(env: str, replicas: int, cpu: tuple[str, str], mem: tuple[str, str],
               tag: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
             "timeoutSeconds": 2, "failureThreshold": 3}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": env, "labels": {"app": APP, "env": env}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": APP, "env": env},
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/path": "/metrics",
                                             "prometheus.io/port": "8000"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [{
                        "name": APP, "image": f"{IMAGE}:{tag}",
                        "ports": [{"containerPort": 8000, "name": "http"}],
                        "resources": {"requests": {"cpu": cpu[0], "memory": mem[0]},
                                      "limits": {"cpu": cpu[1], "memory": mem[1]}},
                        "env": [{"name": "MODEL_TRACK", "value": "stable"}],
                        "livenessProbe": {**probe, "initialDelaySeconds": 20},
                        "readinessProbe": {**probe, "initialDelaySeconds": 5},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True},
                        # the sampled /predict inputs (deployment/api/input_log.py): bounded by
                        # INPUT_LOG_MAX_MB; replace with a volume the drift job reads
                        "volumeMounts": [{"name": "production-inputs", "mountPath": INPUT_LOG}],
                    }],
                    "volumes": [{"name": "production-inputs",
                                 "emptyDir": {"sizeLimit": "128Mi"}}],
                },
            },
        },
    }


def service(env: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": APP, "namespace": env, "labels": {"app": APP}},
            "spec": {"selector": {"app": APP},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}}


def hpa(env: str) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": APP, "namespace": env},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": APP},
                     "minReplicas": 3, "maxReplicas": 10,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization": 70}}}]}}


def ci_workflow(python: str) -> str:
    """Tests -> model validation -> image build and push -> staging -> production (behind the
    `production` environment's manual approval); a failed rollout is undone."""
    sha = "${{ github.sha }}"
    deploy_steps = """      - uses: actions/checkout@v4
      - name: Deploy the manifests and the image built for this commit
        run: |
          kubectl apply -f deployment/k8s/{env}/
          kubectl -n {env} set image deployment/model-api model-api={image}:{sha}
          kubectl -n {env} rollout status deployment/model-api --timeout=300s
      - name: Roll back a failed rollout
        if: failure()
        run: kubectl -n {env} rollout undo deployment/model-api
"""
    staging = deploy_steps.format(env="staging", image=IMAGE, sha=sha)
    production = deploy_steps.format(env="production", image=IMAGE, sha=sha)
    return f"""name: model-api
on:
  push:
    branches: [main]
  pull_request:
  workflow_dispatch:

jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{python}"
      - run: pip install -r deployment/docker/requirements.txt pytest httpx
      - name: API and A/B tests
        run: PYTHONPATH=. pytest -q tests/test_api.py ab_testing

  validate-model:
    needs: test
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{python}"
      - run: pip install -r deployment/docker/requirements.txt
      - name: Re-score the model on the hold-out split
        run: python deployment/validate_model.py --min-ratio 0.98

  build:
    needs: validate-model
    if: github.ref == 'refs/heads/main'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Build the image (build context = the repository root)
        run: docker build -f deployment/docker/Dockerfile -t {IMAGE}:{sha} .
      - name: Push it
        run: docker push {IMAGE}:{sha}

  deploy-staging:
    needs: build
    runs-on: ubuntu-latest
    environment: staging
    steps:
{staging}
  deploy-production:
    needs: deploy-staging
    runs-on: ubuntu-latest
    # the "production" environment requires a manual approval (set in the repository settings)
    environment: production
    steps:
{production}"""


def image_tag(meta: dict[str, Any]) -> str:
    """The manifests pin the image to the model version (CI sets the commit's image)."""
    return "v" + re.sub(r"[^A-Za-z0-9_.-]", "-", str(meta["version"]))[:100]


REGISTRY_README = """# registry/

The exported champion of the MLflow Model Registry (the project's `mlflow.db`), written by
`continuous_training/registry.py` on every promotion and rollback: `champion.json` names the
version, `versions/<version>/` holds its `model.joblib` and `model_meta.json`. The API serves the
champion when `champion.json` exists, else `artifacts/`; the image copies this folder, so
rebuilding it after a promotion or a rollback ships the new champion. Empty until the first
version is registered (phase 6).
"""


def run(task: BuiltinTask) -> None:
    ws = Path.cwd()
    spec = read_spec(ws)
    meta = read_meta(ws)
    features = list(meta["feature_columns"])
    types = feature_types(ws, features)
    copy_templates(ws, ["deployment/__init__.py", "deployment/api", "deployment/docker/Dockerfile",
                        "deployment/validate_model.py", "ab_testing", "tests/test_api.py"])
    write_text(ws / "deployment" / "api" / "features.json", json.dumps(types, indent=2) + "\n")
    ids = [str(c) for c in spec.get("id_columns") or [] if str(c) not in types]
    write_text(ws / "deployment" / "api" / "id_columns.json", json.dumps(ids) + "\n")
    write_text(ws / "deployment" / "docker" / "requirements.txt",
               "\n".join(_pinned(REQUIREMENTS)) + "\n")
    if not (ws / "registry" / "README.md").is_file():  # the image copies registry/ (Dockerfile)
        write_text(ws / "registry" / "README.md", REGISTRY_README)
    for env, replicas, cpu, mem in (("staging", 3, ("250m", "1"), ("256Mi", "1Gi")),
                                    ("production", 3, ("500m", "1"), ("512Mi", "1Gi"))):
        folder = ws / "deployment" / "k8s" / env
        write_yaml(folder / "deployment.yaml",
                   [deployment(env, replicas, cpu, mem, image_tag(meta))])
        write_yaml(folder / "service.yaml", [service(env)])
        write_yaml(folder / "hpa.yaml", [hpa(env)])
    write_text(ws / ".github" / "workflows" / "model-api.yml", ci_workflow("3.11"))
    serving = spec.get("serving") or {}
    write_text(ws / "deployment-guide.md", render_doc("deployment-guide.md.j2", {
        "meta": meta, "features": features,
        "p95_ms": serving.get("latency_p95_ms", 100),
        "rps": serving.get("throughput_rps", 1000)}))
