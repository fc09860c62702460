"""Data quality: a schema inferred from the data, and validation of any table against it.

data_quality/schema.json holds, for every column of the splits (ids, features, target): its type
(integer | number | category | string), whether it may be missing, its range (numbers)
or allowed values (categories). `pandera_schema` turns it into a pandera DataFrameSchema and
`validate` reports every violation pandera finds; the pipeline stops when the cleaned dataset
does not comply.

Run: `python -m data_quality.schema` (validates data/interim/dataset.csv and the splits)
-> data_quality/validation_report.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

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


def _numbers(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def column_schema(col: dict[str, Any]) -> pa.Column:
    """One schema.json entry as a pandera Column: nullability and, per type, the checks (each
    vectorised over the column; missing values are left to `nullable`)."""
    checks: list[pa.Check] = []
    if col["type"] in ("integer", "number"):
        checks.append(pa.Check(lambda s: _numbers(s).notna(), name="numeric",
                               error="non-numeric value"))
        if col["type"] == "integer":
            checks.append(pa.Check(lambda s: ~(_numbers(s) % 1 > 0), name="integer",
                                   error="non-integer value"))
        lo, hi = col.get("min"), col.get("max")
        if lo is not None and hi is not None:
            checks.append(pa.Check(lambda s, lo=lo, hi=hi: _numbers(s).isna()
                                   | _numbers(s).between(lo, hi), name=f"in [{lo}, {hi}]",
                                   error=f"value outside [{lo}, {hi}]"))
    elif col["type"] == "category":
        allowed = set(col["categories"])
        checks.append(pa.Check(lambda s, allowed=allowed: s.astype(str).isin(allowed),
                               name="category", error="value not in the allowed categories"))
    return pa.Column(None, checks=checks, nullable=bool(col["nullable"]), required=True,
                     name=col["name"])


def pandera_schema(schema: dict[str, Any]) -> pa.DataFrameSchema:
    """schema.json as a pandera DataFrameSchema: every column required, no other column."""
    return pa.DataFrameSchema({c["name"]: column_schema(c) for c in schema["columns"]},
                              strict=True, name="splits")


def problems_of(errors: pa.errors.SchemaErrors) -> tuple[list[str], int]:
    """pandera's failure cases as one line per column and check, and the violating cells."""
    cases = errors.failure_cases
    problems: list[str] = []
    bad_cells = 0
    frame_level = {"column_in_schema": "unexpected columns", "column_in_dataframe":
                   "missing columns"}
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        values = sorted({str(v) for v in group["failure_case"].dropna()})
        if str(group["schema_context"].iloc[0]) == "DataFrameSchema":
            problems.append(f"{frame_level.get(str(check), str(check))}: {values[:10]}")
            continue
        bad_cells += len(group)
        what = "missing value in a non-nullable column" if "not_nullable" in str(check) \
            else str(check)
        problems.append(f"{column}: {what} ({len(group)} cell(s))"
                        + (f", e.g. {values[:3]}" if values and values != ["None"] else ""))
    return problems, bad_cells


def validate(df: pd.DataFrame, schema: dict[str, Any]) -> dict[str, Any]:
    """Every violation of the schema in df (pandera, lazily: all of them, not the first):
    missing or unexpected columns, nulls, types, ranges, categories."""
    problems: list[str] = []
    bad_cells = 0
    try:
        pandera_schema(schema).validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        problems, bad_cells = problems_of(e)
    expected = [c["name"] for c in schema["columns"]]
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
