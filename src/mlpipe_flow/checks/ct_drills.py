"""What the continuous-training drills share: a scratch copy of the workspace, the drill data
the gate makes at gate time, the agent's scripts run in the copy, and the judge of every
drill — what the API serves. A served state is measured by starting the workspace's API on a
snapshot of the copy and scoring its /predict answers on the test split with the gate's own
metric (`metrics.score`); its fingerprint (a hash of those answers) tells two served models
apart whatever /health claims. Snapshots are served two at a time, each state once.

Margins (a stated statistical basis, no dataset-tuned constant): `se` is the bootstrap
standard error of the served champion's score on the test split (the sampling noise of the
hold-out). A model is *decisively worse* than the champion when it scores more than
`decisive_se` (4) standard errors below it; a score has *recovered* to the phase-3 level when
it is within `recover_se` (2, the retrain drill's) standard errors of the score phase 3 passed
with. `served_rule()` states all of this in the words the prompt shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks import metrics
from mlpipe_flow.checks.base import CheckContext
from mlpipe_flow.checks.serving import API_APP, http
from mlpipe_flow.models import CheckResult

SCRATCH_IGNORE = shutil.ignore_patterns(".mlpipe", ".git", "mlruns", "mlflow.db", "__pycache__",
                                        ".venv", "*.pyc", "raw", ".pytest_cache")
KEEP = {"keep", "keep_champion", "kept", "reject"}
PROMOTE = {"promote", "promoted"}


class DrillError(Exception):
    """The drill could not measure (a missing input or record): the check says `error`."""


class DrillParams(BaseModel):
    """What every continuous-training drill shares (the scripts' contract and the margins)."""

    model_config = ConfigDict(extra="forbid")
    UNSTATED: ClassVar[frozenset[str]] = frozenset({"parallel"})
    retrain: str = "continuous_training/retrain.py"
    decisions: str = "registry/decisions.jsonl"
    test: str = "data/splits/test.csv"
    train: list[str] = Field(default_factory=lambda: ["data/splits/train.csv",
                                                      "data/splits/valid.csv"])
    script_timeout_s: float = Field(default=240, gt=0)
    startup_s: float = Field(default=90, gt=0, description="API start-up limit")
    parallel: int = Field(default=2, ge=1, le=4, description="APIs started at once")
    request_records: int = Field(default=200, ge=1, description="records per /predict request "
                                 "(what the phase-4 gate already sends at once)")
    se_resamples: int = Field(default=200, ge=50)
    decisive_se: float = Field(default=4.0, gt=0)


def served_rule(p: DrillParams) -> str:
    """How every drill judges, as the prompt states it."""
    return ("Judged in a scratch copy of the workspace, on data the gate makes at gate time, by "
            "what the API serves: after each step the gate starts `deployment/api` (`/health` "
            f"within {p.startup_s:g} s), posts `{p.test}` to `/predict` in requests of "
            f"{p.request_records:,} records and scores the answers (the answers, not `/health`, "
            f"tell models apart); se is the bootstrap standard error ({p.se_resamples:,} "
            "resamples) of the champion's served score, decisively worse is more than "
            f"{p.decisive_se:g} se below it (a champion whose own answers, inverted as the "
            f"drill inverts labels, score within {2 * p.decisive_se:g} se of it makes the drill "
            "an error). Each run of a script has "
            f"{p.script_timeout_s:g} s.")


def wrong_labels_rule(p: DrillParams) -> str:
    """The drill data with every label wrong (`drill_data(corrupt=True)`)."""
    rows = " and ".join(f"`{t}`" for t in p.train)
    return (f"the rows of {rows} in a random order with every label wrong (classes rotated, two "
            "classes swapped; a regression target reflected about its mean)")


# -- the workspace copy and the agent's scripts ------------------------------------------------
@dataclass
class Drill:
    ctx: CheckContext
    params: DrillParams
    ws: Path  # the scratch copy the scripts change
    root: Path  # where snapshots go
    spec: dict[str, Any]
    seed: int
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return str(self.spec["primary_metric"])

    @property
    def higher(self) -> bool:
        return metrics.higher_is_better(self.metric)

    def run(self, script: str, *args: str, timeout_s: float | None = None) -> proc.ProcResult:
        if not (self.ws / script).is_file():
            raise DrillFailed(f"{script} does not exist")
        env = proc.scrubbed_env(extra={**self.ctx.env, "PYTHONPATH": str(self.ws),
                                       "PYTHONDONTWRITEBYTECODE": "1"})
        res = proc.run([self.ctx.python, script, *args], cwd=self.ws, env=env,
                       timeout_s=timeout_s or self.params.script_timeout_s)
        self.log.append({"run": " ".join([script, *args]).replace(str(self.root), "<drill>"),
                         "exit": res.returncode, "seconds": round(res.duration_s, 2),
                         "tail": tail(res.output)})
        return res

    def snapshot(self, name: str) -> Path:
        """A copy of the workspace copy as the scripts left it, to be served later."""
        dest = self.root / "states" / name
        shutil.copytree(self.ws, dest, ignore=SCRATCH_IGNORE, symlinks=True)
        return dest

    def decisions(self) -> list[dict[str, Any]]:
        try:
            lines = (self.ws / self.params.decisions).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for ln in lines:
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def retrain(self, data: Path, *extra: str) -> dict[str, Any]:
        """Run the retrain script on `data`; the decision record it appended (DrillFailed when
        it failed or recorded nothing)."""
        before = len(self.decisions())
        res = self.run(self.params.retrain, "--data", str(data), *extra)
        label = f"retrain --data {data.name} {' '.join(extra)}".strip()
        if not res.ok:
            raise DrillFailed(f"{label} exited with {res.describe()}: {' | '.join(tail(res.output))}")
        new = self.decisions()[before:]
        if not new:
            raise DrillFailed(f"{label} appended no decision record to {self.params.decisions}")
        rec = new[-1]
        decision = str(rec.get("decision", "")).lower()
        if decision not in KEEP | PROMOTE:
            raise DrillFailed(f"{label} recorded decision {rec.get('decision')!r}, expected "
                              "'promote' or 'keep'")
        rec["_promoted"] = decision in PROMOTE
        return rec


class DrillFailed(Exception):
    """The agent's scripts did not do their part: the check fails with this message."""


def tail(output: str, n: int = 4) -> list[str]:
    return [ln[:300] for ln in output.splitlines() if ln.strip()][-n:]


@contextmanager
def start(ctx: CheckContext, params: DrillParams) -> Iterator[Drill]:
    """A scratch copy of the workspace for one drill (deleted with the check's scratch)."""
    import yaml

    spec = yaml.safe_load((ctx.workspace / "ml-spec.yaml").read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "primary_metric" not in spec:
        raise DrillError("ml-spec.yaml names no primary_metric")
    for rel in [params.test, *params.train]:
        if not (ctx.workspace / rel).is_file():
            raise DrillError(f"{rel} does not exist")
    if ctx.scratch is None:
        raise DrillError("the check has no scratch folder (run it through the gate)")
    root = Path(ctx.scratch) / f"drill-{secrets.token_hex(3)}"
    ws = root / "ws"
    shutil.copytree(ctx.workspace, ws, ignore=SCRATCH_IGNORE, symlinks=True)
    try:
        yield Drill(ctx, params, ws, root, spec, seed=secrets.randbelow(2**31))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_drill(ctx: CheckContext, params: DrillParams, body: Callable[[Drill, dict[str, Any]], CheckResult],
              ev: dict[str, Any] | None = None) -> CheckResult:
    """`body(drill, evidence)` in a fresh scratch copy: DrillError is `error` (cannot measure),
    DrillFailed `failed`; the drill's seed and steps always go into the evidence."""
    from mlpipe_flow.checks.base import result

    ev = {} if ev is None else ev
    try:
        with start(ctx, params) as drill:
            ev["seed"] = drill.seed
            try:
                return body(drill, ev)
            finally:
                ev["steps"] = drill.log
    except DrillError as e:
        return result("error", str(e), **ev)
    except DrillFailed as e:
        return result("failed", str(e), **ev)


# -- data the gate makes at gate time ----------------------------------------------------------
def drill_data(drill: Drill, name: str, corrupt: bool) -> Path:
    """The labelled training rows (train + valid splits) in a fresh random order. With
    `corrupt` every label is systematically wrong (`Inversion`): classes rotated (for two
    classes: swapped), a regression target reflected about its mean. A model trained on it
    learns the inverse of the real relation and scores decisively below the champion whatever
    its family; shuffled labels are not decisive (a model fitted to noise ranks along a random
    direction, which in a few dozen features often correlates with the real one: AUC 0.71
    against a champion's 0.83 was seen). Written outside the workspace copy."""
    import numpy as np

    data = labelled_rows(drill)
    rng = np.random.default_rng(drill.seed + len(name))
    data = data.iloc[rng.permutation(len(data))].reset_index(drop=True)
    if corrupt:
        target = drill.spec["target"]
        data[target] = Inversion.of(drill, data[target]).apply(data[target])
    path = drill.root / "data" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(path, index=False)
    return path


def labelled_rows(drill: Drill) -> Any:
    import pandas as pd

    target = drill.spec["target"]
    frames = [pd.read_csv(drill.ctx.workspace / rel, low_memory=False)
              for rel in drill.params.train]
    data = pd.concat(frames, ignore_index=True)
    if target not in data.columns:
        raise DrillError(f"the training splits have no target column {target!r}")
    return data


@dataclass
class Inversion:
    """The drill's label corruption: a regression target reflected about `mean`, or each class
    replaced by the next one (`rotate`), both taken from the training rows."""

    mean: float | None = None
    rotate: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, drill: Drill, y: Any) -> Inversion:
        import pandas as pd

        if drill.spec.get("problem_type") == "regression":
            return cls(mean=float(pd.to_numeric(y, errors="coerce").mean()))
        labels = sorted(y.dropna().unique().tolist(), key=metrics.label)
        if len(labels) < 2:
            raise DrillError(f"the training splits hold one class of {drill.spec['target']!r}")
        return cls(rotate={a: labels[(i + 1) % len(labels)] for i, a in enumerate(labels)})

    def apply(self, y: Any) -> Any:
        import pandas as pd

        if self.mean is not None:
            return 2 * self.mean - pd.to_numeric(y, errors="coerce")
        return y.map(self.rotate)

    def served(self, served: Served) -> tuple[list[Any], list[list[float]] | None, list[str] | None]:
        """The served answers as a model that learnt the inverted labels would give them: the
        predictions reflected or rotated, each class's probability moved to the class it
        becomes."""
        preds = list(served.predictions or [])
        if self.mean is not None:
            return [2 * self.mean - float(v) for v in preds], None, None
        turn = {metrics.label(a): metrics.label(b) for a, b in self.rotate.items()}
        moved = [turn.get(metrics.label(v), metrics.label(v)) for v in preds]
        classes = served.classes
        if served.probabilities is None or not classes:
            return moved, None, classes
        back = {turn.get(c, c): i for i, c in enumerate(classes)}  # new class -> old column
        probs = [[row[back.get(c, i)] for i, c in enumerate(classes)] for row in served.probabilities]
        return moved, probs, classes


# -- the served state ------------------------------------------------------------------------
@dataclass
class Served:
    name: str
    version: str | None
    fingerprint: str
    score: float
    rows: int
    scored_from: str  # "probabilities" or "labels"
    se: float | None = None
    metrics_text: str | None = None
    predictions: list[Any] | None = None  # the answers themselves (kept out of the evidence)
    probabilities: list[list[float]] | None = None
    classes: list[str] | None = None

    def brief(self) -> dict[str, Any]:
        d = asdict(self)
        for raw in ("metrics_text", "predictions", "probabilities", "classes"):
            d.pop(raw, None)
        d["score"] = round(self.score, 6)
        if self.se is not None:
            d["se"] = round(self.se, 6)
        return d


class Truth:
    """The test split the gate scores served answers on."""

    def __init__(self, drill: Drill) -> None:
        import pandas as pd

        spec = drill.spec
        frame = pd.read_csv(drill.ctx.workspace / drill.params.test, low_memory=False)
        features = list(spec.get("feature_columns") or [])
        missing = [c for c in [*features, spec["target"]] if c not in frame.columns]
        if not features or missing:
            raise DrillError(f"{drill.params.test} lacks the spec's columns {missing[:5]}")
        self.metric = drill.metric
        self.positive = spec.get("positive_class")
        self.regression = spec.get("problem_type") == "regression"
        self.truth = frame[spec["target"]].tolist()
        self.frame = frame
        self.features = features
        self.records: list[dict[str, Any]] = json.loads(frame[features].to_json(orient="records"))
        chunk = drill.params.request_records
        self.bodies = [json.dumps({"records": self.records[i:i + chunk]}).encode()
                       for i in range(0, len(self.records), chunk)]

    def outputs(self, body: Any) -> tuple[list[Any], list[list[float]] | None, list[str] | None]:
        """(predictions, probabilities, classes) from one /predict answer."""
        if isinstance(body, list):
            return body, None, None
        if not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
            raise ValueError("the answer has no 'predictions' list")
        preds = body["predictions"]
        probs = body.get("probabilities")
        if isinstance(probs, list) and probs and all(isinstance(p, dict) for p in probs):
            classes = [str(c) for c in probs[0]]
            return preds, [[float(p[c]) for c in classes] for p in probs], classes
        if isinstance(probs, list) and probs and isinstance(body.get("classes"), list):
            return preds, [[float(x) for x in p] for p in probs], [str(c) for c in body["classes"]]
        return preds, None, None

    def score(self, preds: list[Any], probs: list[list[float]] | None,
              classes: list[str] | None, idx: Any = None) -> tuple[float, str]:
        import numpy as np

        truth = self.truth if idx is None else [self.truth[i] for i in idx]
        if self.metric in metrics.PROBA_METRICS and probs is None:
            # no probabilities served: score the labels as 0/1 scores (still one method for
            # every served state, so the states compare)
            labels = sorted({metrics.label(v) for v in self.truth} | {metrics.label(p) for p in preds})
            onehot = [[1.0 if metrics.label(p) == c else 0.0 for c in labels] for p in preds]
            use = onehot if idx is None else [onehot[i] for i in idx]
            return metrics.score(self.metric, truth, None, use, labels, self.positive), "labels"
        p = preds if idx is None else [preds[i] for i in idx]
        pr = probs if (probs is None or idx is None) else np.asarray(probs)[idx].tolist()
        return (metrics.score(self.metric, truth, p, pr, classes, self.positive),
                "probabilities" if probs is not None else "labels")

    def se(self, preds: list[Any], probs: list[list[float]] | None, classes: list[str] | None,
           resamples: int) -> float:
        """Bootstrap standard error of the score over the test rows (fixed seed)."""
        import numpy as np

        rng = np.random.default_rng(0)
        n = len(self.truth)
        got = []
        for _ in range(resamples):
            idx = rng.integers(0, n, n)
            try:
                got.append(self.score(preds, probs, classes, idx)[0])
            except ValueError:  # a resample with one class
                continue
        return float(np.std(got, ddof=1)) if len(got) > 1 else float("nan")


def fingerprint(preds: list[Any], probs: list[list[float]] | None) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.8g}") if math.isfinite(v) else str(v)
        return metrics.label(v) if not isinstance(v, (int, float)) else norm(float(v))

    rows = [norm(p) for p in preds]
    if probs is not None:
        rows += [[round(x, 6) for x in p] for p in probs]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def serve(drill: Drill, truth: Truth, folders: dict[str, Path],
          with_se: set[str] = frozenset(), with_metrics: set[str] = frozenset()  # type: ignore[assignment]
          ) -> dict[str, Served]:
    """Start the API on each folder (`parallel` at a time), score its /predict answers on the
    test split; {name: Served}. An API that does not come up or answer raises DrillFailed."""
    out: dict[str, Served] = {}
    names = list(folders)
    for i in range(0, len(names), drill.params.parallel):
        group = names[i:i + drill.params.parallel]
        with ExitStack() as stack:
            servers = {}
            for name in group:
                folder = folders[name]
                if not (folder / "deployment" / "api" / "main.py").is_file():
                    raise DrillFailed("deployment/api/main.py does not exist")
                port = proc.free_port()
                env = proc.scrubbed_env(extra={**drill.ctx.env, "PYTHONPATH": str(folder),
                                               "PYTHONDONTWRITEBYTECODE": "1"})
                argv = [drill.ctx.python, "-m", "uvicorn", API_APP, "--host", "127.0.0.1",
                        "--port", str(port), "--log-level", "warning"]
                server = stack.enter_context(proc.start_server(
                    argv, cwd=folder, env=env, log_path=drill.root / "logs" / f"api-{name}.log"))
                servers[name] = (port, server)
            health = _wait_healthy(drill, servers)
            for name in group:
                port = servers[name][0]
                out[name] = _measure(drill, truth, name, port, health[name],
                                     name in with_se, name in with_metrics)
    return out


def _wait_healthy(drill: Drill, servers: dict[str, tuple[int, proc.Server]]) -> dict[str, Any]:
    deadline = time.monotonic() + drill.params.startup_s
    health: dict[str, Any] = {}
    while len(health) < len(servers):
        for name, (port, server) in servers.items():
            if name in health:
                continue
            if not server.alive():
                raise DrillFailed(f"the API ({name} state) exited with status "
                                  f"{server.proc.returncode} before /health answered; log: "
                                  f"{' | '.join(server.log_tail(4))}")
            try:
                status, body = http("GET", f"http://127.0.0.1:{port}/health", timeout=2)
                if status == 200:
                    data = json.loads(body)
                    health[name] = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                pass
        if len(health) < len(servers):
            if time.monotonic() > deadline:
                raise DrillFailed(f"the API did not answer /health within "
                                  f"{drill.params.startup_s:.0f}s")
            time.sleep(0.2)
    return health


def _measure(drill: Drill, truth: Truth, name: str, port: int, health: dict[str, Any],
             with_se: bool, with_metrics: bool) -> Served:
    preds: list[Any] = []
    probs: list[list[float]] | None = []
    classes: list[str] | None = None
    for body in truth.bodies:
        status, raw = http("POST", f"http://127.0.0.1:{port}/predict", body, timeout=60)
        if status != 200:
            raise DrillFailed(f"/predict ({name} state) answered HTTP {status}: "
                              f"{raw[:200].decode(errors='replace')}")
        try:
            p, pr, cl = truth.outputs(json.loads(raw))
        except ValueError as e:
            raise DrillFailed(f"/predict ({name} state): {e}") from None
        preds += p
        if pr is None or probs is None:
            probs = None
        else:
            probs += pr
            classes = cl
    if len(preds) != len(truth.truth):
        raise DrillFailed(f"/predict ({name} state) returned {len(preds)} predictions for "
                          f"{len(truth.truth)} rows")
    try:
        score, how = truth.score(preds, probs, classes)
    except ValueError as e:
        raise DrillFailed(f"cannot score the {name} state's answers: {e}") from None
    version = health.get("model_version")
    served = Served(name, None if version is None else str(version), fingerprint(preds, probs),
                    score, len(preds), how, predictions=preds, probabilities=probs,
                    classes=classes)
    if with_se:
        served.se = truth.se(preds, probs, classes, drill.params.se_resamples)
    if with_metrics:  # a few one-record requests too, as live traffic sends them
        for rec in truth.records[:20]:
            http("POST", f"http://127.0.0.1:{port}/predict",
                 json.dumps({"records": [rec]}).encode(), timeout=10)
        status, raw = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=10)
        served.metrics_text = raw.decode(errors="replace") if status == 200 else None
    return served


# -- the MLflow Model Registry: which version an alias names, and what that version predicts --
REGISTRY_PROBE = Path(__file__).with_name("registry_probe.py")


@dataclass
class AliasState:
    model_name: str
    version: str
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[str] | None

    def brief(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "version": self.version}


def alias_state(drill: Drill, truth: Truth, registry_uri: str, model_name: str | None,
                alias: str) -> AliasState:
    """The version `alias` names in the workspace copy's registry, and its model's outputs on
    the test split (the registry_probe in the workspace's interpreter). DrillFailed when the
    registry has no such alias or its model does not run."""
    from mlpipe_flow.checks import metrics as gate_metrics
    from mlpipe_flow.checks.artifacts import feature_types

    folder = drill.root / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    rows, req, resp = (folder / "rows.csv", folder / f"request-{alias}.json",
                       folder / f"response-{alias}.json")
    truth.frame[truth.features].to_csv(rows, index=False)
    req.write_text(json.dumps({
        "registry_uri": registry_uri, "model_name": model_name, "alias": alias,
        "rows": str(rows), "features": truth.features,
        "dtypes": feature_types(truth.frame, truth.features),
        "proba": drill.metric in gate_metrics.PROBA_METRICS}), encoding="utf-8")
    resp.unlink(missing_ok=True)
    env = proc.scrubbed_env(extra={**drill.ctx.env, "PYTHONPATH": str(drill.ws),
                                   "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "2"})
    res = proc.run([drill.ctx.python, str(REGISTRY_PROBE), str(req), str(resp)], cwd=drill.ws,
                   env=env, timeout_s=drill.params.script_timeout_s)
    drill.log.append({"run": f"registry probe: {registry_uri} alias {alias}",
                      "exit": res.returncode, "seconds": round(res.duration_s, 2),
                      "tail": tail(res.output)})
    try:
        out = json.loads(resp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DrillFailed(f"reading the alias {alias!r} from the MLflow registry "
                          f"{registry_uri} failed ({res.describe()}): "
                          f"{' | '.join(tail(res.output))}") from None
    if "error" in out:
        raise DrillFailed(f"the MLflow registry {registry_uri}: {out['error']}")
    classes = [str(c) for c in out.get("classes") or []] or None
    return AliasState(str(out["model_name"]), str(out["version"]), out["predictions"],
                      out.get("probabilities"), classes)


def disagreement(served: Served, state: AliasState, regression: bool) -> float:
    """How far a registry version's own outputs are from what the API served: the largest
    difference of a class probability (both give them), else of a regression value (relative
    to max(1, |value|)), else the share of differing labels."""
    import numpy as np

    if served.probabilities is not None and state.probabilities is not None:
        a = np.asarray(state.probabilities, dtype=float)
        b = np.asarray(served.probabilities, dtype=float)
        if a.shape != b.shape or len(state.classes or []) != a.shape[1] or \
                len(served.classes or []) != b.shape[1]:
            return float("inf")
        mine = dict(zip(state.classes or [], a.T, strict=True))
        theirs = dict(zip(served.classes or [], b.T, strict=True))
        if set(mine) != set(theirs):
            return float("inf")
        return max(float(np.max(np.abs(mine[c] - theirs[c]))) for c in mine)
    if len(served.predictions or []) != len(state.predictions):
        return float("inf")
    if regression:
        a = np.asarray(served.predictions, dtype=float)
        b = np.asarray(state.predictions, dtype=float)
        return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))
    same = [metrics.label(a) == metrics.label(b)
            for a, b in zip(served.predictions or [], state.predictions, strict=True)]
    return 1.0 - sum(same) / max(1, len(same))


def decisive_champion(drill: Drill, truth: Truth, champ: Served) -> float:
    """The champion's standard error, after making sure the drill can tell the models it trains
    on inverted labels from the champion: the champion's own answers, inverted as the drill
    inverts labels (`Inversion.served`, what a model that learnt the inverted relation serves),
    must score more than 2 x `decisive_se` standard errors below the champion, so that a model
    trained on inverted labels lands `decisive_se` below it with room for the training noise.
    For a symmetric metric (ROC AUC: the inverted answers score 1 - AUC) this is the champion
    lying `decisive_se` above chance; for RMSE on a small test split it is far less strict
    than `decisive_se` above the dummy baseline, which 67 test rows cannot give a model that
    beats the mean by a quarter (diabetes: 3.7 se)."""
    se = champ.se if champ.se is not None else float("nan")
    if math.isnan(se) or se <= 0:  # NaN or zero: resampling could not measure the noise
        se = 1e-9
    inv = Inversion.of(drill, labelled_rows(drill)[drill.spec["target"]])
    try:
        inverted = truth.score(*inv.served(champ))[0]
    except (ValueError, TypeError) as e:
        raise DrillError(f"the champion's answers cannot be scored inverted: {e}") from None
    need = 2 * drill.params.decisive_se
    if worse_by(drill, inverted, champ.score) <= need * se:
        raise DrillError(f"the served champion's {drill.metric} {champ.score:.4f} is within "
                         f"{need:g} standard errors ({se:.4f}) of its own answers inverted as "
                         f"the drill inverts labels ({inverted:.4f}): a drill cannot tell a model "
                         "trained on inverted labels from the champion on this test split")
    return se


# -- the workspace as it is: measured once per content, kept in mlpipe's records ---------------
def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p.relative_to(folder)).encode() + b"\0")
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:24]


def champion_state(drill: Drill, truth: Truth) -> Served:
    """What the workspace as it is serves (with its standard error and its /metrics text),
    measured once per workspace content and remembered in the run's records."""
    records = drill.ctx.records()
    if records is not None and not records.exists():
        raise DrillError(records.missing())
    key = f"ct-served-v2-{tree_hash(drill.ws)}-{drill.params.se_resamples}"
    lock = records.cache_lock(key) if records is not None else contextlib.nullcontext()
    with lock:  # the phase-6 drills run at once: the first measures, the others wait for it
        cached = records.cache_get(key) if records else None
        if cached:
            return Served(**cached)
        served = serve(drill, truth, {"champion": drill.snapshot("champion")},
                       with_se={"champion"}, with_metrics={"champion"})["champion"]
        if records is not None:
            records.cache_put(key, asdict(served))
        return served


def phase3_level(drill: Drill, champion: Served) -> tuple[float, str]:
    """The score phase 3 passed with (mlpipe's records), else the served champion's."""
    records = drill.ctx.records()
    if records is None:
        return champion.score, "the served champion (no recorded run to compare with)"
    ev = records.passed_check("phase3", "beats-baseline")
    if not ev or not isinstance(ev.get("score"), (int, float)):
        raise DrillError(f"mlpipe's records of run {records.run_id} hold no phase-3 "
                         "beats-baseline score to recover to")
    return float(ev["score"]), "phase 3's recorded score"


def worse_by(drill: Drill, a: float, b: float) -> float:
    """How much worse score a is than b, in the metric's direction (positive: worse)."""
    return (b - a) if drill.higher else (a - b)


def recorded_score(rec: dict[str, Any], key: str) -> float | None:
    v = rec.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def within(tolerance: float, recorded: float | None, measured: float) -> bool:
    """A recorded score equals the gate's measurement within tolerance x max(1, |measured|)."""
    if recorded is None or not math.isfinite(recorded):
        return False
    return abs(recorded - measured) <= tolerance * max(1.0, abs(measured))


def decision_brief(rec: dict[str, Any]) -> dict[str, Any]:
    keep = ("decision", "champion_score", "challenger_score", "challenger_model", "metric",
            "reason")
    return {k: rec[k] for k in keep if k in rec}
