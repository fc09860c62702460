"""Helpers shared by the built-in phases 4-6: read the workspace contract, copy templates, write
files atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlpipe_flow.builtin import BuiltinUserError

TEMPLATES = Path(__file__).parent / "templates"


def read_spec(ws: Path) -> dict[str, Any]:
    import yaml

    p = ws / "ml-spec.yaml"
    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError:
        raise BuiltinUserError("ml-spec.yaml is missing: run phase1 first") from None
    except yaml.YAMLError as e:
        raise BuiltinUserError(f"ml-spec.yaml is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise BuiltinUserError("ml-spec.yaml must be a mapping")
    return spec


def read_meta(ws: Path) -> dict[str, Any]:
    p = ws / "artifacts" / "model_meta.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except OSError:
        raise BuiltinUserError("artifacts/model_meta.json is missing: run phase3 first") from None
    except ValueError as e:
        raise BuiltinUserError(f"artifacts/model_meta.json is not valid JSON: {e}") from None
    for key in ("version", "feature_columns", "target", "problem_type"):
        if key not in meta:
            raise BuiltinUserError(f"artifacts/model_meta.json: field '{key}' is missing")
    if not (ws / "artifacts" / "model.joblib").is_file():
        raise BuiltinUserError("artifacts/model.joblib is missing: run phase3 first")
    return meta


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_yaml(path: Path, docs: list[dict[str, Any]]) -> None:
    import yaml

    write_text(path, yaml.safe_dump_all(docs, sort_keys=False))


def copy_templates(ws: Path, rels: list[str]) -> None:
    """Copy template files or folders (relative to templates/) to the same place in ws."""
    for rel in rels:
        src = TEMPLATES / rel
        if src.is_dir():
            for f in sorted(src.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts:
                    dest = ws / f.relative_to(TEMPLATES)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dest)
        else:
            dest = ws / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def render_doc(name: str, context: dict[str, Any]) -> str:
    """A prose template under templates/docs/ (Jinja, StrictUndefined)."""
    from mlpipe_flow.templating import render

    return render(TEMPLATES / "docs", name, context)


def feature_types(ws: Path, features: list[str]) -> dict[str, str]:
    """'number' or 'string' per feature, from the training split's inferred dtypes."""
    import pandas as pd

    try:
        train = pd.read_csv(ws / "data" / "splits" / "train.csv", nrows=5000)
    except OSError:
        raise BuiltinUserError("data/splits/train.csv is missing: run phase2 first") from None
    missing = [c for c in features if c not in train.columns]
    if missing:
        raise BuiltinUserError(f"data/splits/train.csv lacks feature column(s) {missing[:5]}")
    return {c: "number" if train[c].dtype.kind in "biuf" else "string" for c in features}
