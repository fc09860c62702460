"""The Kubernetes manifests the deployment phase writes, checked against the schemas of a
Kubernetes release (`kubernetes-validate`, offline) and against the live API: probes must reach
a path the API answers with 2xx on the port the container listens on, the memory limit must
hold the API's measured resident memory, images must be pinned, requests sane, secrets out of
plain-text env, and the Service and HPA must point at the Deployment."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.security_checks import looks_secret
from mlpipe_flow.models import CheckResult

SECRET_NAME = re.compile(r"(?i)(passw(or)?d|passwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
                         r"private[_-]?key|credential|auth)")
CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
UNITS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
         "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
         "m": 10**-3}


class K8sParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str = "deployment/k8s"
    kinds: list[str] = Field(default_factory=lambda: ["Deployment", "Service",
                                                      "HorizontalPodAutoscaler"])
    hpa_min: int = 3
    hpa_max: int = 10
    hpa_cpu_percent: int = 70
    k8s_version: str = Field(default="1.30", description="schemas of this Kubernetes release")
    min_cpu_request_m: float = Field(default=50, ge=0, description="millicores")
    min_memory_request_mi: float = Field(default=64, ge=0, description="MiB")
    dockerfile: str = "deployment/docker/Dockerfile"
    live: bool = Field(default=True, description="start the API to test probe paths and memory")
    memory_probe_rows: int = Field(default=200, ge=1,
                                   description="test rows predicted before memory is measured")

    def describe(self) -> str:
        text = (f"every YAML file under `{self.folder}/` must validate against the Kubernetes "
                f"{self.k8s_version} schemas in strict mode (no unknown fields; custom resources "
                f"exempt), and hold at least one each of {', '.join(self.kinds)}. Each "
                "Deployment: a selector matching its pod labels, the RollingUpdate strategy, no "
                "privileged container, no privilege escalation, not running as root; each "
                "container an image pinned to a version tag with a digit (not `latest`) or a "
                "digest, cpu and memory requests and limits with requests at least "
                f"{self.min_cpu_request_m:g}m CPU and {self.min_memory_request_mi:g}Mi memory "
                "and limits at least the requests, its containerPort the port the command of "
                f"`{self.dockerfile}` listens on, httpGet liveness and readiness probes on that "
                "port (by number or name), and no env var with a secret-like name (password, "
                "secret, token, API/access/private key, credential, auth) holding a plain-text value (use "
                "`valueFrom.secretKeyRef`); no Secret or ConfigMap with a plain-text secret. "
                "Each Service selects a Deployment's pods and targets one of their ports; each "
                "HorizontalPodAutoscaler's `scaleTargetRef` names a Deployment of these "
                f"manifests, with minReplicas {self.hpa_min}, maxReplicas {self.hpa_max} and "
                f"{self.hpa_cpu_percent}% average CPU utilisation.")
        if self.live:
            text += (" When all that holds, the gate starts the API: every probe path must "
                     "answer 2xx, and each memory limit must be at least the API's peak resident "
                     f"memory after a `/predict` of {self.memory_probe_rows} test rows.")
        return text


def cpu_cores(q: Any) -> float | None:
    m = CPU.match(str(q).strip())
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def memory_bytes(q: Any) -> float | None:
    m = MEMORY.match(str(q).strip())
    if not m:
        return None
    return float(m.group(1)) * UNITS[m.group(2)]


def pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.split("/")[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return bool(tag) and tag != "latest" and bool(re.search(r"\d", tag))


def _hpa_cpu(spec: dict[str, Any]) -> Any:
    if "targetCPUUtilizationPercentage" in spec:
        return spec["targetCPUUtilizationPercentage"]
    for m in spec.get("metrics") or []:
        res = (m or {}).get("resource") or {}
        if res.get("name") == "cpu":
            return (res.get("target") or {}).get("averageUtilization")
    return None


def _load(ctx: CheckContext, folder: Path) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    import yaml

    docs: list[tuple[str, dict[str, Any]]] = []
    for f in sorted(folder.rglob("*.y*ml")):
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            loaded = list(yaml.safe_load_all(f.read_text(encoding="utf-8")))
        except yaml.YAMLError as e:
            return docs, f"{rel} is not valid YAML: {str(e).splitlines()[0]}"
        for d in loaded:
            if isinstance(d, dict) and d.get("kind") == "List":
                docs += [(rel, i) for i in d.get("items") or [] if isinstance(i, dict)]
            elif isinstance(d, dict):
                docs.append((rel, d))
            elif d is not None:
                return docs, f"{rel} holds a YAML document that is not a mapping"
    return docs, None


def _schema_problems(docs: list[tuple[str, dict[str, Any]]], version: str) -> list[str]:
    import kubernetes_validate as kv

    out = []
    for rel, d in docs:
        name = f"{rel}:{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        if (not d.get("apiVersion") or not d.get("kind")) and not rel.rsplit("/", 1)[-1] \
                .startswith("kustomization."):
            out.append(f"{name}: no apiVersion or kind")
            continue
        if d.get("kind") == "Kustomization" or rel.rsplit("/", 1)[-1].startswith("kustomization."):
            continue  # kustomize's own file, not a Kubernetes object
        try:
            kv.validate(d, version, strict=True)
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.absolute_path)
            out.append(f"{name}: schema: {where or '(root)'}: {str(e.message)[:160]}")
        except kv.SchemaNotFoundError:
            group = str(d.get("apiVersion")).rpartition("/")[0]
            if "." in group and not group.endswith(".k8s.io"):
                continue  # a custom resource (e.g. monitoring.coreos.com): no schema to hold it to
            out.append(f"{name}: no Kubernetes {version} schema for {d.get('apiVersion')} "
                       f"{d.get('kind')} (a removed or misspelt API version?)")
    return out


def _image_port(ctx: CheckContext, path: str) -> str | None:
    """The port the image's command listens on (None: no readable Dockerfile)."""
    from mlpipe_flow.checks.dockerfile_build import BuildError, parse
    from mlpipe_flow.checks.image_run import listen_port

    p = ctx.workspace / path
    if not p.is_file():
        return None
    try:
        ins = parse(p.read_text(encoding="utf-8", errors="replace"))
    except (OSError, BuildError):
        return None
    final = [i for i in ins[max((n for n, i in enumerate(ins) if i.word == "FROM"), default=0):]]
    expose = [w.split("/")[0] for i in final if i.word == "EXPOSE" for w in i.args.split()]
    from mlpipe_flow.checks.dockerfile_build import exec_or_shell

    entry = next((exec_or_shell(i.args) for i in reversed(final) if i.word == "ENTRYPOINT"), None)
    cmd = next((exec_or_shell(i.args) for i in reversed(final) if i.word == "CMD"), None)
    words: list[str] = []
    for form in (entry, cmd):
        if form is not None:
            words += form if isinstance(form, list) else ["/bin/sh", "-c", form]
    return listen_port(words, expose)


def _container_problems(name: str, c: dict[str, Any], params: K8sParams,
                        image_port: str | None) -> tuple[list[str], dict[str, Any]]:
    """Problems of one container, and what must be measured live: {probe paths: port}."""
    problems: list[str] = []
    cname = f"{name}: container {c.get('name')}"
    image = str(c.get("image") or "")
    if not pinned(image):
        problems.append(f"{cname}: image {image or '(none)'} is not pinned (a version tag with a "
                        f"digit, not latest, or a digest)")
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    for part, got in (("requests", req), ("limits", lim)):
        if not ("cpu" in got and "memory" in got):
            problems.append(f"{cname}: has no cpu+memory {part}")
    cpu_r, cpu_l = cpu_cores(req.get("cpu")), cpu_cores(lim.get("cpu"))
    mem_r, mem_l = memory_bytes(req.get("memory")), memory_bytes(lim.get("memory"))
    if "cpu" in req and (cpu_r is None or cpu_r * 1000 < params.min_cpu_request_m):
        problems.append(f"{cname}: cpu request {req.get('cpu')} is below "
                        f"{params.min_cpu_request_m:g}m")
    if "memory" in req and (mem_r is None or mem_r < params.min_memory_request_mi * 2**20):
        problems.append(f"{cname}: memory request {req.get('memory')} is below "
                        f"{params.min_memory_request_mi:g}Mi")
    if cpu_r is not None and cpu_l is not None and cpu_l < cpu_r:
        problems.append(f"{cname}: cpu limit {lim.get('cpu')} < request {req.get('cpu')}")
    if mem_r is not None and mem_l is not None and mem_l < mem_r:
        problems.append(f"{cname}: memory limit {lim.get('memory')} < request {req.get('memory')}")
    ports = [p for p in c.get("ports") or [] if isinstance(p, dict)]
    by_name = {str(p.get("name")): str(p.get("containerPort")) for p in ports if p.get("name")}
    numbers = {str(p.get("containerPort")) for p in ports}
    if image_port is not None and ports and image_port not in numbers:
        problems.append(f"{cname}: containerPort {sorted(numbers)} is not the port the image's "
                        f"command listens on ({image_port})")
    live: dict[str, Any] = {}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        spec = c.get(probe)
        if not spec:
            if probe != "startupProbe":
                problems.append(f"{cname}: has no {probe}")
            continue
        get = spec.get("httpGet") if isinstance(spec, dict) else None
        if not isinstance(get, dict):
            problems.append(f"{cname}: {probe} is not an httpGet probe of the API")
            continue
        port = str(get.get("port"))
        number = by_name.get(port, port if port in numbers else None)
        if number is None:
            problems.append(f"{cname}: {probe} port {port} is not a port of the container "
                            f"({sorted(numbers) + sorted(by_name)})")
        elif image_port is not None and number != image_port:
            problems.append(f"{cname}: {probe} port {port} is not the port the image's command "
                            f"listens on ({image_port})")
        live.setdefault(str(get.get("path") or "/"), []).append(f"{cname}: {probe}")
    for e in c.get("env") or []:
        if not isinstance(e, dict):
            continue
        if SECRET_NAME.search(str(e.get("name"))) and "value" in e \
                and looks_secret(str(e.get("value") or "")):
            problems.append(f"{cname}: env {e.get('name')} holds a plain-text value (use "
                            f"valueFrom.secretKeyRef)")
    return problems, {"paths": live, "memory_limit": mem_l, "memory_limit_text": lim.get("memory"),
                      "cname": cname}


def _privilege_problems(name: str, pod: dict[str, Any]) -> list[str]:
    """Privileged containers, privilege escalation, running as root (pod or container)."""
    out = []
    pod_ctx = pod.get("securityContext") or {}
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        if not isinstance(c, dict):
            continue
        sc = {**pod_ctx, **(c.get("securityContext") or {})}
        cname = f"{name}: container {c.get('name')}"
        if sc.get("privileged") is True:
            out.append(f"{cname} is privileged")
        if sc.get("allowPrivilegeEscalation") is True:
            out.append(f"{cname} allows privilege escalation")
        if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
            out.append(f"{cname} runs as root")
    return out


def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def k8s_manifests(ctx: CheckContext, params: K8sParams) -> CheckResult:
    folder = ctx.workspace / params.folder
    files = sorted(folder.rglob("*.y*ml")) if folder.is_dir() else []
    if not files:
        return result("failed", f"no YAML manifests under {params.folder}/")
    docs, bad = _load(ctx, folder)
    if bad:
        return result("failed", bad)
    kinds = sorted({str(d.get("kind")) for _, d in docs})
    problems = [f"no {k}" for k in params.kinds if k not in kinds]
    problems += _schema_problems(docs, params.k8s_version)
    image_port = _image_port(ctx, params.dockerfile)
    deployments: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
    live: list[dict[str, Any]] = []
    for rel, d in docs:
        meta = d.get("metadata") or {}
        name = f"{rel}:{d.get('kind')}/{meta.get('name')}"
        spec = d.get("spec") or {}
        if d.get("kind") == "Deployment":
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not _selects(selector, labels):
                problems.append(f"{name}: selector {selector} does not match the pod labels "
                                f"{labels}")
            pod = template.get("spec") or {}
            strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
            if strategy != "RollingUpdate":
                problems.append(f"{name}: strategy {strategy}, not a rolling update")
            problems += _privilege_problems(name, pod)
            containers = [c for c in pod.get("containers") or [] if isinstance(c, dict)]
            if not containers:
                problems.append(f"{name}: no containers")
            for c in containers:
                port = image_port
                if c.get("command") or c.get("args"):
                    from mlpipe_flow.checks.image_run import listen_port

                    port = listen_port([str(w) for w in (c.get("command") or []) +
                                        (c.get("args") or [])], [port] if port else [])
                found, need = _container_problems(name, c, params, port)
                problems += found
                live.append(need)
            deployments.append((str(meta.get("namespace") or ""), str(meta.get("name")), labels,
                                pod))
        elif d.get("kind") == "Service":
            problems += _service_problems(name, meta, spec, deployments, docs)
        elif d.get("kind") == "HorizontalPodAutoscaler":
            got = (spec.get("minReplicas"), spec.get("maxReplicas"), _hpa_cpu(spec))
            want = (params.hpa_min, params.hpa_max, params.hpa_cpu_percent)
            if got != want:
                problems.append(f"{name}: min/max/cpu% = {got}, expected {want}")
            problems += _hpa_target(name, meta, spec, docs)
        elif d.get("kind") in ("Secret", "ConfigMap"):
            problems += _plain_secrets(name, d)
    ev: dict[str, Any] = {"files": [f.relative_to(ctx.workspace).as_posix() for f in files],
                          "kinds": kinds, "deployments": len(deployments),
                          "schemas": f"Kubernetes {params.k8s_version} (kubernetes-validate, strict)",
                          "image_port": image_port}
    if params.live and live and not problems:
        measured, live_problems = _measure_live(ctx, live, params.memory_probe_rows)
        ev.update(measured)
        problems += live_problems
    elif params.live and live:
        ev["live"] = "not run: the manifests have problems already"
    if problems:
        return result("failed", f"{len(problems)} problem(s): {'; '.join(problems[:5])}", **ev,
                      problems=problems)
    return result("passed", f"{len(files)} manifest file(s) valid against the Kubernetes "
                  f"{params.k8s_version} schemas; {len(deployments)} Deployment(s) with pinned "
                  f"images, sane requests and limits, probes the live API answers on its port; "
                  f"HPA {params.hpa_min}-{params.hpa_max} at {params.hpa_cpu_percent}% CPU", **ev)


def _service_problems(name: str, meta: dict[str, Any], spec: dict[str, Any],
                      deployments: list[tuple[str, str, dict[str, Any], dict[str, Any]]],
                      docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    selector = spec.get("selector") or {}
    ns = str(meta.get("namespace") or "")
    pods = []
    for _, d in docs:
        if d.get("kind") != "Deployment":
            continue
        if str((d.get("metadata") or {}).get("namespace") or "") != ns:
            continue
        template = (d.get("spec") or {}).get("template") or {}
        if _selects(selector, (template.get("metadata") or {}).get("labels") or {}):
            pods.append(template.get("spec") or {})
    if not pods:
        return [f"{name}: selector {selector} matches no Deployment's pods"]
    ports = [p for pod in pods for c in pod.get("containers") or [] for p in c.get("ports") or []
             if isinstance(p, dict)]
    known = {str(p.get("containerPort")) for p in ports} | {str(p.get("name")) for p in ports
                                                            if p.get("name")}
    out = []
    for sp in spec.get("ports") or []:
        target = str(sp.get("targetPort", sp.get("port")))
        if target not in known:
            out.append(f"{name}: targetPort {target} is not a port of the selected pods "
                       f"({sorted(known)})")
    return out


def _hpa_target(name: str, meta: dict[str, Any], spec: dict[str, Any],
                docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    ref = spec.get("scaleTargetRef") or {}
    ns = str(meta.get("namespace") or "")
    for _, d in docs:
        m = d.get("metadata") or {}
        if d.get("kind") == ref.get("kind") == "Deployment" and m.get("name") == ref.get("name") \
                and str(m.get("namespace") or "") == ns:
            return []
    return [f"{name}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not a Deployment of "
            f"these manifests"]


def _plain_secrets(name: str, d: dict[str, Any]) -> list[str]:
    import base64

    out = []
    for part in ("data", "stringData"):
        for key, value in (d.get(part) or {}).items():
            text = str(value or "")
            if part == "data" and d.get("kind") == "Secret":
                try:
                    text = base64.b64decode(text, validate=True).decode("utf-8", "replace")
                except ValueError:
                    pass
            if d.get("kind") == "ConfigMap" and not SECRET_NAME.search(str(key)):
                continue
            if looks_secret(text.strip()):
                out.append(f"{name}: {part}.{key} holds a plain-text secret in the repository "
                           f"(create the Secret outside the manifests)")
    return out


def _measure_live(ctx: CheckContext, live: list[dict[str, Any]],
                  rows: int) -> tuple[dict[str, Any], list[str]]:
    """Probe paths the live API answers, and its peak resident memory after a batch of
    predictions, against each container's memory limit."""
    import json

    from mlpipe_flow.checks.serving import ApiDown, http, running_api

    problems: list[str] = []
    answers: dict[str, int] = {}
    paths = sorted({p for need in live for p in need["paths"]})
    try:
        with running_api(ctx) as api:
            for path in paths:
                try:
                    answers[path] = http("GET", f"{api.base}{path}", timeout=5)[0]
                except OSError:
                    answers[path] = 0
            _warm(ctx, api.base, http, json, rows)
            rss = _peak_rss(api.server.proc.pid)
    except ApiDown as e:
        return {}, [f"the API did not start to test the probes: {e}"]
    for need in live:
        for path, probes in need["paths"].items():
            if not 200 <= answers.get(path, 0) < 300:
                problems.append(f"{probes[0]} path {path} answers HTTP {answers.get(path)} on "
                                f"the live API (expected 2xx)")
        limit = need["memory_limit"]
        if rss and limit is not None and limit < rss:
            problems.append(f"{need['cname']}: memory limit {need['memory_limit_text']} is below "
                            f"the API's measured peak resident memory {rss / 2**20:.0f}Mi")
    return {"probe_paths": answers, "api_peak_rss_mi": round(rss / 2**20, 1) if rss else None}, \
        problems


def _warm(ctx: CheckContext, base: str, http: Any, json: Any, n: int) -> None:
    """One batch of `n` test rows through /predict, so the memory measured is the serving one."""
    import csv

    def value(v: str) -> Any:
        try:
            return float(v) if v != "" else None
        except ValueError:
            return v

    try:
        meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json").read_text("utf-8"))
        features = list(meta["feature_columns"])
        with (ctx.workspace / "data" / "splits" / "test.csv").open(newline="",
                                                                   encoding="utf-8") as f:
            rows = [{c: value(r.get(c, "")) for c in features}
                    for _, r in zip(range(n), csv.DictReader(f), strict=False)]
        http("POST", f"{base}/predict", json.dumps({"records": rows}).encode(), timeout=60)
    except (OSError, ValueError, KeyError):
        pass


def _peak_rss(pid: int) -> float | None:
    """VmHWM (peak resident set) of the process and its children, in bytes."""
    total = 0.0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        total += int(m.group(1)) * 1024 if m else 0
        todo += [int(c) for c in children]
    return total or None
