"""Phase-4 mutations: consistent lies about the deployment that only a measurement catches.

Each test breaks a private copy of the passing workspace (tests/mutations.py) the way a lazy or
dishonest agent would - the API, its tests, the image, the manifests and the workflow kept
consistent with each other - and asserts that the named check of the phase-4 gate fails and
says what it measured. The unmutated workspace passes every gate (the `passing` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from mutations import Mutant

MAIN = "deployment/api/main.py"
DOCKERFILE = "deployment/docker/Dockerfile"
STAGING = "deployment/k8s/staging/deployment.yaml"
WORKFLOW = ".github/workflows/model-api.yml"
PROBA = "        proba = self.predictor.output(columns)\n"
ROUTE = "            labels, conf, probs = await state.batcher.predict(body.records)\n"


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def _each_deployment(mutant: Mutant, fn: Any) -> None:
    for env in ("staging", "production"):
        mutant.edit_yaml(f"deployment/k8s/{env}/deployment.yaml", lambda d: fn(_container(d)))


# --- the API -----------------------------------------------------------------------------------

def test_lookup_table_api(mutant: Mutant) -> None:
    """The test split's answers precomputed; anything else gets a constant. The agent's own
    tests (on test rows) still pass."""
    mutant.replace(MAIN, PROBA,
                   "        proba = np.array([_TABLE.get(_key(r), [0.7, 0.3]) for r in rows])\n")
    mutant.write(MAIN, mutant.text(MAIN) + '''

def _key(row):
    return tuple("nan" if row[c] is None else f"{row[c]:.6g}" if isinstance(row[c], (int, float))
                 else str(row[c]) for c in FEATURES)


def _known():
    import pandas as pd
    test = pd.read_csv(ROOT / "data" / "splits" / "test.csv")[FEATURES]
    rows = json.loads(test.to_json(orient="records"))
    model = joblib.load(model_dir() / "model.joblib")
    proba = model.predict_proba(pd.DataFrame(to_columns(rows)))
    return {_key(r): p for r, p in zip(rows, proba.tolist())}


_TABLE = _known()
''')
    mutant.assert_caught("phase4", "api-serves", "disagrees", "perturbed")


def test_api_ignoring_a_feature(mutant: Mutant) -> None:
    """payment_method is replaced by its most frequent value before the model sees it."""
    mutant.replace(MAIN, "        values = [r[name] for r in rows]\n",
                   "        values = [r[name] if name != 'payment_method' else 'card' for r in rows]\n")
    mutant.assert_caught("phase4", "api-serves", "disagrees", "payment_method")


def test_api_imputing_missing_values_its_own_way(mutant: Mutant) -> None:
    """Nulls become 0 before the model sees them (the pipeline's imputer would use the median):
    caught on the rows where the gate sends null for a feature train has missing."""
    mutant.replace(MAIN, "np.nan if v is None else v", "0.0 if v is None else v")
    mutant.assert_caught("phase4", "api-serves", "disagrees")


def test_api_distorting_probabilities(mutant: Mutant) -> None:
    """Labels kept, probabilities sharpened: a label-only comparison would pass it."""
    sharpen = "        proba = proba ** 1.2 / (proba ** 1.2).sum(axis=1, keepdims=True)\n"
    mutant.replace(MAIN, PROBA, PROBA + sharpen)
    mutant.assert_caught("phase4", "api-serves", "disagrees", "probabilities")


def test_api_without_probabilities(mutant: Mutant) -> None:
    mutant.replace(MAIN, "confidence=conf, probabilities=probs)", "confidence=conf, probabilities=None)")
    mutant.assert_caught("phase4", "api-serves", "probabilities")


def test_api_answering_bad_input_with_a_500(mutant: Mutant) -> None:
    """Records no longer validated for missing features: the batcher fails with a 500."""
    mutant.replace(MAIN, "for name in FEATURES}})", "for name in FEATURES}}, total=False)")
    mutant.assert_caught("phase4", "api-serves", "422")


def test_metrics_labelled_by_raw_path(mutant: Mutant) -> None:
    """Every request path its own label value: each 404 a scanner sends grows a new series
    (the agent's own tests only request real routes)."""
    mutant.replace(MAIN, '            route = getattr(scope.get("route"), "path", None) or UNMATCHED\n',
                   '            route = scope["path"]\n')
    got = mutant.assert_caught("phase4", "api-serves", "raw path")
    assert got["evidence"]["new_series_after_unknown_paths"] >= 3


def test_eval_of_the_request_body(mutant: Mutant) -> None:
    mutant.write(MAIN, mutant.text(MAIN) + '''

@app.post("/admin/score")
async def admin_score(request: Request) -> dict[str, Any]:
    return {"result": eval((await request.body()).decode())}
''')
    mutant.assert_caught("phase4", "bandit", "eval")


def test_exec_in_a_module_the_api_imports(mutant: Mutant) -> None:
    """Outside the folders bandit scans: found by the AST scan that follows the API's imports."""
    mutant.write("feature_engineering/hooks.py", "def apply(code: str) -> None:\n    exec(code)\n")
    mutant.replace(MAIN, "from deployment.api import predictor\n",
                   "from deployment.api import predictor\nfrom feature_engineering import hooks\n")
    mutant.assert_caught("phase4", "bandit", "feature_engineering/hooks.py", "exec")


def test_pickle_loads_of_the_request_body(mutant: Mutant) -> None:
    mutant.write(MAIN, mutant.text(MAIN) + '''

@app.post("/admin/load")
async def admin_load(request: Request) -> dict[str, Any]:
    import pickle as p
    return {"type": type(p.loads(await request.body())).__name__}
''')
    mutant.assert_caught("phase4", "bandit", "pickle")


# --- the container -----------------------------------------------------------------------------

def test_dockerfile_copies_a_missing_folder(mutant: Mutant) -> None:
    mutant.replace(DOCKERFILE, "COPY --chown=app:app artifacts/ /app/artifacts/",
                   "COPY --chown=app:app models/best/ /app/artifacts/")
    mutant.assert_caught("phase4", "dockerfile-structure", "models/best/", "does not exist")


def test_dockerignore_drops_the_model(mutant: Mutant) -> None:
    mutant.write(".dockerignore", ".git\n.venv\ndata/\nartifacts/\n")
    mutant.assert_caught("phase4", "dockerfile-structure", "artifacts/", ".dockerignore")


def test_healthcheck_cmd_true(mutant: Mutant) -> None:
    text = mutant.text(DOCKERFILE)
    start = text.index("HEALTHCHECK")
    end = text.index("\n\n", start)
    mutant.write(DOCKERFILE, text[:start] + "HEALTHCHECK --interval=15s CMD true" + text[end:])
    mutant.assert_caught("phase4", "dockerfile-serves", "HEALTHCHECK", "down")


def test_healthcheck_with_curl_on_a_slim_image(mutant: Mutant) -> None:
    text = mutant.text(DOCKERFILE)
    start = text.index("HEALTHCHECK")
    end = text.index("\n\n", start)
    mutant.write(DOCKERFILE, text[:start] + "HEALTHCHECK CMD curl -f http://localhost:8000/health"
                 + text[end:])
    mutant.assert_caught("phase4", "dockerfile-structure", "curl")


def test_cmd_python_http_server(mutant: Mutant) -> None:
    text = mutant.text(DOCKERFILE)
    start = text.index('CMD ["uvicorn"')
    mutant.write(DOCKERFILE, text[:start] + 'CMD ["python", "-m", "http.server", "8000"]\n')
    mutant.assert_caught("phase4", "dockerfile-serves", "http.server", "does not serve")


def test_cmd_serving_a_stub_app(mutant: Mutant) -> None:
    """An image whose command serves a stub that answers /health and /predict with constants."""
    mutant.write("deployment/api/stub.py", '''from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "model_version": "1"}


@app.post("/predict")
async def predict(request: Request) -> dict:
    n = len((await request.json())["records"])
    return {"predictions": ["No"] * n, "probabilities": [{"No": 0.8, "Yes": 0.2}] * n}
''')
    mutant.replace(DOCKERFILE, '"deployment.api.main:app"', '"deployment.api.stub:app"')
    mutant.assert_caught("phase4", "dockerfile-serves", "disagrees")


def test_cmd_bound_to_localhost(mutant: Mutant) -> None:
    mutant.replace(DOCKERFILE, '"--host", "0.0.0.0", ', "")
    mutant.assert_caught("phase4", "dockerfile-structure", "binds 127.0.0.1")


def test_requirements_without_scikit_learn(mutant: Mutant) -> None:
    """The image would build; the model cannot be unpickled in it."""
    rel = "deployment/docker/requirements.txt"
    mutant.write(rel, "".join(line + "\n" for line in mutant.text(rel).splitlines()
                              if not line.startswith("scikit-learn")))
    # the image's requirements no longer pin the package that trained the model
    mutant.assert_caught("phase4", "dockerfile-serves", "does not pin", "scikit-learn")


# --- Kubernetes --------------------------------------------------------------------------------

def test_probes_on_a_wrong_port(mutant: Mutant) -> None:
    def wrong(c: dict[str, Any]) -> None:
        for probe in ("livenessProbe", "readinessProbe"):
            c[probe]["httpGet"]["port"] = 8080
    _each_deployment(mutant, wrong)
    mutant.assert_caught("phase4", "k8s-structure", "port 8080")


def test_probes_on_a_wrong_path(mutant: Mutant) -> None:
    def wrong(c: dict[str, Any]) -> None:
        for probe in ("livenessProbe", "readinessProbe"):
            c[probe]["httpGet"]["path"] = "/healthz"
    _each_deployment(mutant, wrong)
    mutant.assert_caught("phase4", "k8s-structure", "/healthz", "404")


def test_latest_images(mutant: Mutant) -> None:
    _each_deployment(mutant, lambda c: c.update(image="registry.example.com/model-api:latest"))
    mutant.assert_caught("phase4", "k8s-structure", "not pinned")


def test_one_millicore_one_mebibyte(mutant: Mutant) -> None:
    _each_deployment(mutant, lambda c: c["resources"].update(requests={"cpu": "1m",
                                                                       "memory": "1Mi"}))
    mutant.assert_caught("phase4", "k8s-structure", "below 50m", "below 64Mi")


def test_memory_limit_below_what_the_api_uses(mutant: Mutant) -> None:
    _each_deployment(mutant, lambda c: c["resources"].update(
        requests={"cpu": "250m", "memory": "64Mi"}, limits={"cpu": "1", "memory": "80Mi"}))
    mutant.assert_caught("phase4", "k8s-structure", "memory limit", "peak resident memory")


def test_plain_text_password_in_env(mutant: Mutant) -> None:
    _each_deployment(mutant, lambda c: c.setdefault("env", []).append(
        {"name": "DB_PASSWORD", "value": "Pr0d-Passw0rd-2024"}))
    mutant.assert_caught("phase4", "k8s-structure", "DB_PASSWORD", "secretKeyRef")


def test_secret_manifest_with_real_values(mutant: Mutant) -> None:
    mutant.write("deployment/k8s/staging/secret.yaml", """apiVersion: v1
kind: Secret
metadata:
  name: model-api
  namespace: staging
type: Opaque
stringData:
  MLFLOW_TRACKING_TOKEN: 9f8e7d6c5b4a39281706f5e4d3c2b1a0
""")
    mutant.assert_caught("phase4", "k8s-structure", "plain-text secret")


def test_manifest_that_is_not_schema_valid(mutant: Mutant) -> None:
    mutant.edit_yaml(STAGING, lambda d: d["spec"].update(replicas="three"))
    mutant.assert_caught("phase4", "k8s-structure", "schema", "replicas")


def test_service_selecting_no_pods(mutant: Mutant) -> None:
    mutant.edit_yaml("deployment/k8s/staging/service.yaml",
                     lambda d: d["spec"].update(selector={"app": "model-api-v2"}))
    mutant.assert_caught("phase4", "k8s-structure", "matches no Deployment")


def test_hpa_scaling_another_deployment(mutant: Mutant) -> None:
    mutant.edit_yaml("deployment/k8s/production/hpa.yaml",
                     lambda d: d["spec"]["scaleTargetRef"].update(name="model-api-canary"))
    mutant.assert_caught("phase4", "k8s-structure", "scaleTargetRef")


# --- secrets -----------------------------------------------------------------------------------

AWS_SECRET = "Zq8vR2mK7xT4bN9wE3hY6jL1pC5sD0fG8aU2iO4e"  # made up, 40 characters


def test_hard_coded_aws_secret_access_key_in_code(mutant: Mutant) -> None:
    mutant.write("deployment/api/storage.py",
                 f'AWS_ACCESS_KEY_ID = "AKIA{"Q7RT2XK9LMZ4WB3N"}"\n'
                 f'AWS_SECRET_ACCESS_KEY = "{AWS_SECRET}"\n')
    mutant.assert_caught("phase4", "secrets", "deployment/api/storage.py")


def test_aws_secret_after_an_underscore_in_an_env_file(mutant: Mutant) -> None:
    """`\\b` does not match between `_` and `SECRET`: the old regex missed this one."""
    mutant.write("deployment/.env", f"MODEL_AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n")
    mutant.assert_caught("phase4", "secrets", "deployment/.env")


def test_password_in_a_database_url(mutant: Mutant) -> None:
    mutant.write("deployment/config.yaml",
                 "feature_store:\n  url: postgresql://mlapp:Xk29vLq7Tz@db.internal:5432/features\n")
    mutant.assert_caught("phase4", "secrets", "deployment/config.yaml")


# --- CI/CD -------------------------------------------------------------------------------------

def test_ci_workflow_that_only_echoes(mutant: Mutant) -> None:
    mutant.write(WORKFLOW, """name: model-api
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: tests
        run: echo "pytest tests/ passed"
  build:
    needs: test
    runs-on: ubuntu-latest
    steps:
      - run: echo "docker build -f deployment/docker/Dockerfile ."
  deploy:
    needs: build
    runs-on: ubuntu-latest
    environment: production
    steps:
      - run: echo "kubectl apply -f deployment/k8s/production/"
""")
    mutant.assert_caught("phase4", "ci-workflow", "no job runs pytest")


def test_ci_ignoring_test_failures(mutant: Mutant) -> None:
    mutant.replace(WORKFLOW, "run: PYTHONPATH=. pytest -q tests/test_api.py ab_testing",
                   "run: PYTHONPATH=. pytest -q tests/test_api.py ab_testing || true")
    mutant.assert_caught("phase4", "ci-workflow", "ignored")


def test_ci_deploying_without_the_tests(mutant: Mutant) -> None:
    mutant.replace(WORKFLOW, "  build:\n    needs: validate-model\n", "  build:\n")
    mutant.assert_caught("phase4", "ci-workflow", "without needing the tests")


def test_ci_building_from_another_context(mutant: Mutant) -> None:
    mutant.replace(WORKFLOW, "docker build -f deployment/docker/Dockerfile",
                   "docker build -f deployment/docker/Dockerfile deployment/docker")
    mutant.replace(WORKFLOW, ":${{ github.sha }} .\n", ":${{ github.sha }}\n")
    mutant.assert_caught("phase4", "ci-workflow", "not the workspace root")


@pytest.mark.parametrize("broken", ["jobs:\n  test:\n    runs-on: ubuntu-latest\n    steps: 3\n"])
def test_ci_workflow_not_schema_valid(mutant: Mutant, broken: str) -> None:
    mutant.write(WORKFLOW, "name: model-api\non: [push]\n" + broken)
    mutant.assert_caught("phase4", "ci-workflow", "schema")


# --- A/B testing and the guide -----------------------------------------------------------------

AB = "ab_testing/ab_test.py"


def test_ab_test_that_always_finds_a_difference(mutant: Mutant) -> None:
    mutant.replace(AB, "    p = math.erfc(abs(z) / math.sqrt(2))\n",
                   "    p = min(math.erfc(abs(z) / math.sqrt(2)), 0.01)\n")
    mutant.assert_caught("phase4", "ab-testing", "A/A tests significant")


def test_ab_rollback_that_never_fires(mutant: Mutant) -> None:
    text = mutant.text(AB)
    mutant.write(AB, text.replace('return "rollback"', 'return "continue"'))
    mutant.assert_caught("phase4", "ab-testing", "rolled back")


def test_ab_assignment_by_a_random_draw(mutant: Mutant) -> None:
    mutant.replace(AB, "    bucket = int.from_bytes(digest[:8], \"big\") / 2**64\n",
                   "    import random\n    bucket = random.random()\n")
    mutant.assert_caught("phase4", "ab-testing", "not deterministic")


def test_deployment_guide_with_placeholders(mutant: Mutant) -> None:
    text = mutant.text("deployment-guide.md")
    start = text.index("## Kubernetes")
    mutant.write("deployment-guide.md", text[:start] + "## Kubernetes\n\nTODO: write the "
                 "deployment steps.\n\n## Rolling back\n\nTBD.\n")
    mutant.assert_caught("phase4", "deployment-guide", "placeholder", "deploying the manifests")


def test_deployment_guide_naming_files_that_do_not_exist(mutant: Mutant) -> None:
    mutant.write("deployment-guide.md", mutant.text("deployment-guide.md") + "\n## Helm\n\n"
                 "`helm upgrade --install model-api deployment/helm/ -f "
                 "deployment/helm/values-prod.yaml`\n")
    mutant.assert_caught("phase4", "deployment-guide", "deployment/helm")


# --- under load ----------------------------------------------------------------------------------
# The gate's own rate (1000 req/s) for 0.5 + 2 s instead of 3 + 10 s: these lies show at once.

SHORT_LOAD = {"rate": 1000, "duration_s": 2, "warmup_s": 0.5}
BUSY = """            if state.batcher.queue.qsize() > 0:
                classes = [str(c) for c in state.served.model.classes_]
                n = len(body.records)
                labels, conf, probs = [classes[0]] * n, [0.5] * n, [{c: 0.5 for c in classes}] * n
            else:
    """


def _short_load(mutant: Mutant) -> Any:
    from ml_workspace import check

    r = check(mutant.ws, "api_load", **SHORT_LOAD)
    assert r.status == "failed", (r.message, r.evidence)
    return r


@pytest.mark.alone
def test_api_fast_only_from_a_cache(mutant: Mutant) -> None:
    """A slow model behind a cache of request bodies: the old load test cycled 500 test rows, so
    after its first 500 requests every answer came from the cache."""
    mutant.replace(MAIN, ROUTE, "            key = b''.join(chunks)\n"
                                "            if key not in _CACHE:\n"
                                "                await asyncio.sleep(0.2)  # the real model's cost\n"
                                "                _CACHE[key] = await state.batcher.predict(body.records)\n"
                                "            labels, conf, probs = _CACHE[key]\n")
    mutant.write(MAIN, mutant.text(MAIN) + "\n_CACHE: dict[bytes, Any] = {}\n")
    r = _short_load(mutant)
    assert "p95 not under 100 ms" in r.message and r.evidence["distinct_requests"] == 2500


@pytest.mark.alone
def test_api_answering_a_constant_when_busy(mutant: Mutant) -> None:
    """Load shedding with made-up answers: when requests queue up, a constant is returned
    instead of running the model (every answer a 200)."""
    mutant.replace(MAIN, ROUTE, BUSY + ROUTE)
    r = _short_load(mutant)
    assert "disagree with the saved model" in r.message, r.message


def test_command_port_not_the_exposed_one(mutant: Mutant) -> None:
    """The image serves on 8080 while EXPOSE, the Service and the probes say 8000."""
    mutant.replace(DOCKERFILE, '"--port", "8000"', '"--port", "8080"')
    mutant.assert_caught("phase4", "dockerfile-structure", "8080", "EXPOSE")


def test_requirements_not_pinning_the_models_library(mutant: Mutant) -> None:
    """scikit-learn unpinned: the image may load the pickle with another version."""
    rel = "deployment/docker/requirements.txt"
    mutant.write(rel, "".join(("scikit-learn>=1.3" if line.startswith("scikit-learn") else line)
                              + "\n" for line in mutant.text(rel).splitlines()))
    mutant.assert_caught("phase4", "dockerfile-serves", "pin", "scikit-learn")


def test_recreate_strategy_and_a_privileged_container(mutant: Mutant) -> None:
    def unsafe(d: dict[str, Any]) -> None:
        d["spec"]["strategy"] = {"type": "Recreate"}
        _container(d)["securityContext"] = {"privileged": True, "runAsUser": 0}
        d["spec"]["template"]["spec"].pop("securityContext", None)
    mutant.edit_yaml("deployment/k8s/production/deployment.yaml", unsafe)
    mutant.assert_caught("phase4", "k8s-structure", "Recreate", "privileged")
