"""Data quality: a schema inferred from the data, and validation of any table against it.

data_quality/schema.json holds, for every column of the splits (ids, features, target): its type
(integer | number | category | string), whether it may be missing, its range (numbers)
or allowed values (categories). `validate` reports every violation; the pipeline stops
when the cleaned dataset does not comply.

Run: `python -m data_quality.schema` (validates data/interim/dataset.csv and the splits)
-> data_quality/validation_report.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = "data_quality/schema.json"
MAX_CATEGORIES = 10_000
#: text with more distinct values than this, most of them distinct, is free text (`string`)
STRING_MIN_DISTINCT = 50
STRING_MIN_SHARE = 0.5


def infer_column(s: pd.Series) -> dict[str, Any]:
    """The column's type, whether it has missing values, and its observed range or values."""
    col: dict[str, Any] = {"name": str(s.name), "nullable": bool(s.isna().any())}
    values = s.dropna()
    if pd.api.types.is_bool_dtype(s):
        col.update(type="category", categories=sorted({str(v) for v in values}))
    elif pd.api.types.is_numeric_dtype(s):
        is_int = bool(len(values) == 0 or (values.astype(float) % 1 == 0).all())
        col["type"] = "integer" if is_int else "number"
        col["min"] = float(values.min()) if len(values) else None
        col["max"] = float(values.max()) if len(values) else None
    else:
        distinct = sorted({str(v) for v in values})
        free_text = len(distinct) > STRING_MIN_DISTINCT and (
            len(distinct) >= STRING_MIN_SHARE * len(values) or len(distinct) > MAX_CATEGORIES)
        if free_text:
            col["type"] = "string"
        else:
            col.update(type="category", categories=distinct)
    return col


def infer_schema(df: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
    """One entry per column of the splits: the id columns, the features and the target."""
    columns = [*spec.get("id_columns", []), *spec["feature_columns"], spec["target"]]
    return {
        "version": 1,
        "target": spec["target"],
        "id_columns": spec.get("id_columns", []),
        "row_count": int(len(df)),
        "columns": [infer_column(df[c]) for c in columns],
    }


def validate(df: pd.DataFrame, schema: dict[str, Any]) -> dict[str, Any]:
    """Every violation of the schema in df: missing/unexpected columns, nulls, types, ranges."""
    problems: list[str] = []
    expected = [c["name"] for c in schema["columns"]]
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing:
        problems.append(f"missing columns: {missing}")
    if extra:
        problems.append(f"unexpected columns: {extra}")
    bad_cells = 0
    for col in schema["columns"]:
        name = col["name"]
        if name not in df.columns:
            continue
        s = df[name]
        nulls = int(s.isna().sum())
        if nulls and not col["nullable"]:
            problems.append(f"{name}: {nulls} missing value(s) in a non-nullable column")
            bad_cells += nulls
        values = s.dropna()
        if col["type"] in ("integer", "number"):
            num = pd.to_numeric(values, errors="coerce")
            not_num = int(num.isna().sum())
            if not_num:
                problems.append(f"{name}: {not_num} non-numeric value(s)")
            num = num.dropna()
            if col["type"] == "integer":
                frac = int((num % 1 != 0).sum())
                if frac:
                    problems.append(f"{name}: {frac} non-integer value(s)")
            lo, hi = col.get("min"), col.get("max")
            out = int(((num < lo) | (num > hi)).sum()) if lo is not None and hi is not None else 0
            if out:
                problems.append(f"{name}: {out} value(s) outside [{lo}, {hi}]")
            bad_cells += not_num + out
        elif col["type"] == "category":
            allowed = set(col["categories"])
            unknown = values[~values.astype(str).isin(allowed)]
            if len(unknown):
                problems.append(f"{name}: {len(unknown)} value(s) not in the allowed categories, "
                                f"e.g. {sorted(set(map(str, unknown)))[:3]}")
                bad_cells += len(unknown)
    cells = max(1, df.shape[0] * max(1, len(expected)))
    completeness = 1.0 - float(df.isna().to_numpy().sum()) / cells if len(df) else 0.0
    return {
        "rows": int(len(df)),
        "valid": not problems,
        "problems": problems,
        "violating_cells": bad_cells,
        "completeness": round(completeness, 6) if not math.isnan(completeness) else 0.0,
    }


def load_schema(root: Path = ROOT) -> dict[str, Any]:
    return json.loads((root / SCHEMA_FILE).read_text(encoding="utf-8"))


def main() -> None:
    schema = load_schema()
    report: dict[str, Any] = {}
    tables = {"dataset": "data/interim/dataset.csv", "train": "data/splits/train.csv",
              "valid": "data/splits/valid.csv", "test": "data/splits/test.csv"}
    for name, rel in tables.items():
        path = ROOT / rel
        if path.is_file():
            report[name] = validate(pd.read_csv(path, low_memory=False), schema)
    out = ROOT / "data_quality/validation_report.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    bad = [k for k, v in report.items() if not v["valid"]]
    print(f"validated {len(report)} table(s); {'violations in ' + ', '.join(bad) if bad else 'all valid'}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
