"""Reading the feature importances an agent saved (interpretability/), whatever the usual shape:

- JSON: {"features": [{"feature": name, "importance": value}, ...]}, a list of such records,
  {name: value, ...}, or any of these under one key ("importances", "feature_importance", ...);
- CSV: a name column (feature, name, column, variable) and a value column (importance,
  importance_mean, mean_abs_shap, value, score, weight, ...).

Names of transformed columns (`num__tenure`, `cat__Contract_Two year`, `onehot__x_a`) are
mapped back to the raw feature column they come from, and their absolute values summed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

NAME_KEYS = ("feature", "feature_name", "name", "column", "variable", "feature_column")
VALUE_KEYS = ("importance", "importance_mean", "mean_importance", "mean_abs_shap", "shap",
              "mean_shap", "value", "score", "weight", "gain", "importance_value")


def find_importances(folder: Path, features: list[str]) -> tuple[str, dict[str, float]] | None:
    """(file relative to folder, {raw feature: importance}) of the first file that names at
    least half of the raw features; files named like 'importance' are tried first."""
    if not folder.is_dir() or not features:
        return None
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".csv")
             and "__pycache__" not in p.parts and p.stat().st_size < 20_000_000]
    files.sort(key=lambda p: ("importance" not in p.name.lower(), len(p.parts), p.name))
    for p in files:
        try:
            if p.suffix.lower() == ".json":
                options = _candidates(json.loads(p.read_text(encoding="utf-8")))
            else:
                options = [_read_csv(p)]
        except (OSError, ValueError, UnicodeDecodeError, csv.Error):
            continue
        mapped = max((to_raw(pairs, features) for pairs in options if pairs), key=len,
                     default={})
        if len(mapped) * 2 >= len(features):
            return p.relative_to(folder).as_posix(), mapped
    return None


def to_raw(pairs: list[tuple[str, float]], features: list[str]) -> dict[str, float]:
    exact = {n: v for n, v in pairs if n in features}
    if len(exact) * 2 >= len(features):
        return exact
    summed: dict[str, float] = {}
    for name, value in pairs:
        raw = raw_column(name, features)
        if raw is not None:
            summed[raw] = summed.get(raw, 0.0) + abs(value)
    return summed


def raw_column(name: str, features: list[str]) -> str | None:
    if name in features:
        return name
    rest = name
    while True:
        if rest in features:
            return rest
        best = max((f for f in features if rest.startswith(f + "_") or rest.startswith(f + "=")),
                   key=len, default=None)
        if best is not None:
            return best
        if "__" not in rest:
            return None
        rest = rest.split("__", 1)[1]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _records(items: list[Any]) -> list[tuple[str, float]]:
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        lower = {str(k).lower(): v for k, v in item.items()}
        name = next((lower[k] for k in NAME_KEYS if k in lower), None)
        value = next((_number(lower[k]) for k in VALUE_KEYS if k in lower
                      and _number(lower[k]) is not None), None)
        if isinstance(name, str) and value is not None:
            out.append((name, value))
    return out


def _candidates(data: Any, depth: int = 0) -> list[list[tuple[str, float]]]:
    """Every list of records and every {name: number} mapping in a JSON document."""
    out: list[list[tuple[str, float]]] = []
    if depth > 4:
        return out
    if isinstance(data, list):
        got = _records(data)
        if got:
            out.append(got)
        return out
    if isinstance(data, dict):
        numeric = [(str(k), x) for k, v in data.items() if (x := _number(v)) is not None]
        if numeric:
            out.append(numeric)
        for value in data.values():
            if isinstance(value, (dict, list)):
                out += _candidates(value, depth + 1)
    return out


def _read_csv(path: Path) -> list[tuple[str, float]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return _records(rows)
