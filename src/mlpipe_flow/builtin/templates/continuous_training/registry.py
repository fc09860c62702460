"""The model registry: MLflow's Model Registry in the project's MLflow store (mlflow.db,
models/tracking.py), and the serving export the API loads and the image ships.

    MLflow registered model `<target>-model`    every version, its run, metrics and lineage
      alias `champion`                          the version in production
      alias `challenger`                        the last candidate retrain.py evaluated
      version tag `previous_champion`           the champion it replaced (what rollback restores)
      version tag `model_version`               the version name the API reports (/health)
    registry/champion.json                      {"version", "model_uri", "history", ...}: the
                                                exported champion (history: the champions
                                                before it, newest last)
    registry/versions/<version>/                model.joblib + model_meta.json, as the API loads them
    registry/decisions.jsonl                    one JSON line per champion/challenger decision

Promotion and rollback are alias moves (`champion`), each followed by `export()`: the
champion's files are written to registry/versions/<version>/ and the pointer
registry/champion.json is replaced atomically (temp file, fsync, os.replace), so an API
starting at that moment loads the old champion or the new one, never half of one. A project
without a store (a fresh clone, which ships the export but not mlflow.db) starts its registry
from the exported champion (else artifacts/, the phase-3 model) on first use.

Models are logged with MLflow's scikit-learn flavour in cloudpickle format (MLflow 3's default,
skops, is not a dependency of this project); load them only from this project's own store.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry"
EXPERIMENT = "continuous-training"
CHAMPION, CHALLENGER = "champion", "challenger"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- the serving export (no MLflow needed to read it) ------------------------------------------
def champion() -> dict[str, Any] | None:
    """The exported champion: {"version", "model_uri", "registered_model", ...} or None."""
    p = REGISTRY / "champion.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def served_dir() -> Path:
    """The folder the API loads: the exported champion, else the phase-3 artifacts/."""
    current = champion()
    if current is not None:
        return REGISTRY / "versions" / str(current["version"])
    return ROOT / "artifacts"


def record_decision(decision: dict[str, Any]) -> None:
    path = REGISTRY / "decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(decision) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- MLflow ----------------------------------------------------------------------------------
def model_name() -> str:
    """The registered model's name, from what the model predicts: `churn-model`."""
    meta = json.loads((ROOT / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    slug = re.sub(r"[^a-z0-9]+", "-", str(meta["target"]).lower()).strip("-") or "target"
    return f"{slug}-model"


def store() -> Any:
    """mlflow, pointed at the project's store (created on first use)."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # the pickle-format notice each log
    import mlflow as mlf

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from models.tracking import tracking_uri

    uri = tracking_uri(ROOT)
    mlf.set_tracking_uri(uri)
    mlf.set_registry_uri(uri)
    if mlf.get_experiment_by_name(EXPERIMENT) is None:
        mlf.create_experiment(EXPERIMENT, artifact_location=(ROOT / "mlruns").as_uri())
    mlf.set_experiment(EXPERIMENT)
    return mlf


def client() -> Any:
    from mlflow import MlflowClient

    store()
    return MlflowClient()


def alias_version(alias: str) -> Any:
    """The model version an alias points to (an mlflow ModelVersion), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(model_name(), alias)
    except MlflowException:
        return None


def model_version_name(mv: Any) -> str:
    """The version name the API reports for a registered version."""
    return str(mv.tags.get("model_version") or mv.version)


def register(model: Any, meta: dict[str, Any], sample: Any = None,
             version_name: str | None = None) -> Any:
    """Log `model` with its meta in the active MLflow run (one is started if none is) and
    register it as a new version; returns the ModelVersion. `version_name`: the name the API
    reports, by default the registered version number."""
    import mlflow.sklearn
    import sklearn

    mlf = store()
    name = model_name()
    signature = None
    if sample is not None and len(sample):
        from mlflow.models import infer_signature

        signature = infer_signature(sample, model.predict(sample))
    own_run = mlf.active_run() is None
    run = mlf.start_run(run_name="register") if own_run else mlf.active_run()
    try:
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", registered_model_name=name,
            signature=signature, metadata={"model_meta": meta},
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    finally:
        if own_run:
            mlf.end_run()
    c = client()
    mv = c.get_model_version(name, str(info.registered_model_version))
    taken = {model_version_name(v) for v in c.search_model_versions(f"name='{name}'")
             if v.version != mv.version}
    wanted = version_name or str(mv.version)
    label, n = wanted, 1
    while label in taken:  # a store rebuilt from an export may already use the name
        label, n = f"{wanted}.{n}", n + 1
    c.set_model_version_tag(name, mv.version, "model_version", label)
    c.set_model_version_tag(name, mv.version, "run_id", run.info.run_id)
    return c.get_model_version(name, mv.version)


def version_meta(mv: Any) -> dict[str, Any]:
    """The model_meta.json of a registered version, as the export writes it."""
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{mv.name}/{mv.version}")
    if not info.metadata or "model_meta" not in info.metadata:
        raise LookupError(f"version {mv.version} of {mv.name} was logged without its model_meta")
    meta = dict(info.metadata["model_meta"])
    meta.update(version=model_version_name(mv), registered_model=mv.name,
                registered_version=str(mv.version), model_uri=f"models:/{mv.name}/{mv.version}")
    return meta


def model_path(mv: Any) -> str:
    """The model file MLflow stores for a version, relative to the project (for records)."""
    from urllib.parse import unquote, urlparse

    import yaml

    folder = Path(unquote(urlparse(client().get_model_version_download_uri(mv.name, mv.version)).path))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
    path = folder / mlmodel["flavors"]["sklearn"]["pickled_model"]
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def export(mv: Any) -> dict[str, Any]:
    """Write a version's model and meta to registry/versions/<version>/ and point
    registry/champion.json at it: what the API loads and the image ships."""
    import joblib
    import mlflow.sklearn

    c = client()
    mv = c.get_model_version(mv.name, mv.version)  # with the tags set since it was read
    meta = version_meta(mv)
    dest = REGISTRY / "versions" / meta["version"]
    try:
        same = json.loads((dest / "model_meta.json").read_text(encoding="utf-8")).get(
            "model_uri") == meta["model_uri"] and (dest / "model.joblib").is_file()
    except (OSError, ValueError):
        same = False
    if not same:
        model = mlflow.sklearn.load_model(meta["model_uri"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        joblib.dump(model, tmp / "model.joblib")
        (tmp / "model_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if dest.exists():  # a stale export under the same name (a store rebuilt from an export)
            aside = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(tmp, dest)
    pointer = {"version": meta["version"], "registered_model": mv.name,
               "registered_version": str(mv.version), "model_uri": meta["model_uri"],
               "alias_uri": f"models:/{mv.name}@{CHAMPION}",
               "history": _history(c, mv), "exported_at": _now()}
    _atomic_write(REGISTRY / "champion.json", json.dumps(pointer, indent=2) + "\n")
    return pointer


def _history(c: Any, mv: Any) -> list[str]:
    """The champions before `mv` (its `previous_champion` chain), oldest first, by version name:
    what a rollback would restore, newest last."""
    chain: list[str] = []
    seen = {str(mv.version)}
    previous = mv.tags.get("previous_champion")
    while previous and previous not in seen:
        seen.add(previous)
        pv = c.get_model_version(mv.name, previous)
        chain.append(model_version_name(pv))
        previous = pv.tags.get("previous_champion")
    return chain[::-1]


# -- promotion and rollback: alias moves, then the export ----------------------------------------
def ensure_initialised() -> dict[str, Any]:
    """The first time (no registered champion): register the served model — the exported
    champion, else artifacts/ — and make it the champion. Returns the exported champion."""
    if alias_version(CHAMPION) is None:
        import joblib

        folder = served_dir()
        meta = json.loads((folder / "model_meta.json").read_text(encoding="utf-8"))
        model = joblib.load(folder / "model.joblib")
        mv = register(model, meta, version_name=str(meta.get("version") or "") or None)
        client().set_registered_model_alias(mv.name, CHAMPION, mv.version)
        export(mv)
    current = champion()
    if current is None:  # registered but never exported (e.g. the export was deleted)
        mv = alias_version(CHAMPION)
        current = export(mv)
    return current


def set_challenger(mv: Any) -> None:
    client().set_registered_model_alias(mv.name, CHALLENGER, mv.version)


def promote(mv: Any) -> dict[str, Any]:
    """Make `mv` the champion (the one it replaces is kept as its `previous_champion`)."""
    c = client()
    current = alias_version(CHAMPION)
    if current is not None and current.version == mv.version:
        return export(mv)
    if current is not None:
        c.set_model_version_tag(mv.name, mv.version, "previous_champion", current.version)
    c.set_registered_model_alias(mv.name, CHAMPION, mv.version)
    c.set_model_version_tag(mv.name, mv.version, "promoted_at", _now())
    return export(mv)


def rollback(to: str | None = None) -> tuple[str, str]:
    """Move `champion` back to the version it replaced (or to registered version `to`) and
    export it. Returns (version names) (from, to)."""
    c = client()
    current = alias_version(CHAMPION)
    if current is None:
        raise RuntimeError("the registry has no champion to roll back from")
    name = current.name
    if to is None:
        previous = current.tags.get("previous_champion")
        if not previous:
            raise RuntimeError(f"version {model_version_name(current)} has no previous champion")
        target = c.get_model_version(name, previous)
    else:
        matches = [v for v in c.search_model_versions(f"name='{name}'")
                   if to in (str(v.version), model_version_name(v))]
        if not matches:
            raise KeyError(f"no registered version {to!r} of {name}")
        target = matches[0]
    c.set_registered_model_alias(name, CHAMPION, target.version)
    c.set_model_version_tag(name, current.version, "rolled_back_at", _now())
    export(target)
    return model_version_name(current), model_version_name(target)
