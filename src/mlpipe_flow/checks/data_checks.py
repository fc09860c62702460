"""Phase-2 checks on the schema and the cells: the gate reads the splits itself (csv module)
and validates every cell against data_quality/schema.json; it measures that the schema fits
the raw data (ranges, categories, nullability), and the splits' completeness."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

SPLITS = ["data/splits/train.csv", "data/splits/valid.csv", "data/splits/test.csv"]
csv.field_size_limit(10_000_000)


def read_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    f = path.open(encoding="utf-8", newline="")
    reader = csv.reader(f)
    header = next(reader, [])

    def rows() -> Iterator[list[str]]:
        try:
            yield from reader
        finally:
            f.close()

    return header, rows()


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _files(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths)


class SplitsSchemaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_path: str = "data_quality/schema.json"
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    min_compliance: float = Field(default=1.0, ge=0, le=1, description="share of valid cells")

    def describe(self) -> str:
        return (f"the gate reads every cell of {_files(self.splits)} itself and validates it "
                f"against `{self.schema_path}` (each column's type, range, allowed categories "
                f"and nullability); at least {self.min_compliance:.0%} of the cells must comply, "
                "and every schema column must be in the splits.")


def splits_schema(ctx: CheckContext, params: SplitsSchemaParams) -> CheckResult:
    try:
        schema = json.loads(ctx.path(params.schema_path).read_text(encoding="utf-8"))
        columns = {c["name"]: c for c in schema["columns"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"{params.schema_path} is missing or not a schema with "
                      f"columns[name, type, nullable]: {e}")
    loose = [f"{name}: {why}" for name, col in columns.items() if (why := _loose_column(col))]
    if loose:
        return result("failed", f"{params.schema_path} does not constrain its columns: "
                      f"{'; '.join(loose[:3])}", loose_columns=loose)
    cells = bad = 0
    examples: list[str] = []
    per_split: dict[str, int] = {}
    for rel in params.splits:
        p = ctx.path(rel)
        if not p.is_file():
            return result("failed", f"{rel} does not exist")
        header, rows = read_rows(p)
        if set(header) != set(columns):
            return result("failed", f"{rel}: columns differ from the schema (extra "
                          f"{sorted(set(header) - set(columns))[:5]}, missing "
                          f"{sorted(set(columns) - set(header))[:5]})")
        specs = [columns[h] for h in header]
        allowed = [set(map(str, c.get("categories") or [])) for c in specs]
        split_bad = 0
        for n, row in enumerate(rows, start=2):
            if len(row) != len(header):
                split_bad += len(header)
                examples.append(f"{rel}:{n}: {len(row)} fields, expected {len(header)}")
                continue
            for v, c, cats in zip(row, specs, allowed, strict=True):
                cells += 1
                why = _violation(v, c, cats)
                if why:
                    split_bad += 1
                    if len(examples) < 5:
                        examples.append(f"{rel}:{n}: {c['name']}={v!r} {why}")
        per_split[rel] = split_bad
        bad += split_bad
    compliance = 1.0 - bad / cells if cells else 0.0
    evidence = {"cells": cells, "violations": bad, "compliance": round(compliance, 6),
                "per_split": per_split, "examples": examples}
    if cells == 0:
        return result("failed", "the splits hold no data rows", **evidence)
    if compliance < params.min_compliance:
        return result("failed", f"measured {bad} of {cells} cells violating "
                      f"{params.schema_path} (compliance {compliance:.4%}, expected >= "
                      f"{params.min_compliance:.0%}); e.g. {examples[0] if examples else ''}",
                      **evidence)
    return result("passed", f"all {cells} cells of {len(params.splits)} splits comply with "
                  f"{params.schema_path}", **evidence)


SCHEMA_TYPES = ("integer", "number", "category", "string")


def _loose_column(col: dict[str, Any]) -> str | None:
    """Why a schema column checks nothing (an unknown type, a number without its range, a
    category without its list), or None: a schema that accepts anything is not a schema."""
    kind = col.get("type")
    if kind not in SCHEMA_TYPES:
        return f"type {kind!r} is not one of {', '.join(SCHEMA_TYPES)}"
    if not isinstance(col.get("nullable"), bool):
        return "nullable must be true or false"
    if kind in ("integer", "number") and not ("min" in col and "max" in col):
        return f"a {kind} column needs min and max"
    if kind == "category" and not (isinstance(col.get("categories"), list) and col["categories"]):
        return "a category column needs its list of categories"
    return None


def _violation(v: str, col: dict[str, Any], cats: set[str]) -> str | None:
    if v == "":
        return None if col.get("nullable") else "is missing in a non-nullable column"
    kind = col.get("type")
    if kind in ("integer", "number"):
        x = _number(v)
        if x is None:
            return f"is not a {kind}"
        if kind == "integer" and not x.is_integer():
            return "is not an integer"
        lo, hi = col.get("min"), col.get("max")
        if lo is not None and x < float(lo) - 1e-9 * max(1.0, abs(float(lo))):
            return f"is below the minimum {lo}"
        if hi is not None and x > float(hi) + 1e-9 * max(1.0, abs(float(hi))):
            return f"is above the maximum {hi}"
        return None
    if kind == "category" and v not in cats and v.strip() not in cats:
        x = _number(v)
        if x is None or not any(_number(c) == x for c in cats):
            return "is not an allowed category"
    return None


class CompletenessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    min_completeness: float = Field(default=0.95, ge=0, le=1)

    def describe(self) -> str:
        return (f"the share of non-missing cells (not empty, not NA/NaN/null) over all cells of "
                f"{_files(self.splits)} must be above {self.min_completeness:.0%}.")


def splits_completeness(ctx: CheckContext, params: CompletenessParams) -> CheckResult:
    cells = empty = 0
    for rel in params.splits:
        p = ctx.path(rel)
        if not p.is_file():
            return result("failed", f"{rel} does not exist")
        _, rows = read_rows(p)
        for row in rows:
            cells += len(row)
            empty += sum(1 for v in row if v.strip() == "" or v in ("NA", "NaN", "nan", "null"))
    ratio = 1.0 - empty / cells if cells else 0.0
    evidence = {"cells": cells, "missing": empty, "completeness": round(ratio, 6)}
    if ratio <= params.min_completeness:
        return result("failed", f"measured completeness {ratio:.2%} ({empty} of {cells} cells "
                      f"missing), expected > {params.min_completeness:.0%}", **evidence)
    return result("passed", f"completeness {ratio:.2%} ({empty} of {cells} cells missing)",
                  **evidence)


# -- the schema fits the raw data -------------------------------------------------------
MAX_LISTED = 10_000  # a category list need not be longer than this: more values may be `string`


class SchemaFitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_path: str = "data_quality/schema.json"
    range_slack: float = Field(default=2.0, gt=0, description="a numeric bound may lie beyond "
                               "the raw range by at most this many times the larger of the raw "
                               "range's width, its largest magnitude and 1")
    extra_categories: int = Field(default=3, ge=0, description="categories the raw data lacks "
                                  "that a column may list (or 10% of the observed ones if more)")
    string_min_distinct: int = Field(default=50, ge=1, description="a `string` column needs more "
                                     "distinct values than this ...")
    string_min_share: float = Field(default=0.1, ge=0, le=1, description="... and this share of "
                                    "its non-missing values distinct")

    def describe(self) -> str:
        return (f"the gate compares `{self.schema_path}` with the raw data itself: every raw "
                "value must fit the schema's ranges, categories and nullability (a column with "
                "missing raw values must be nullable); a numeric bound may lie beyond the raw "
                f"range by at most {self.range_slack:g} times the larger of the range's width, "
                "its largest magnitude and 1 (no bounds that admit anything); a categorical "
                f"column may list at most {self.extra_categories} categories (or 10% of the "
                "observed ones, if more) that the raw data lacks; a `string` (free-text) column "
                f"needs more than {self.string_min_distinct} distinct values and at least "
                f"{self.string_min_share:.0%} of its non-missing values distinct.")


def schema_fits_data(ctx: CheckContext, params: SchemaFitsParams) -> CheckResult:
    """Each schema column against the raw data mlpipe staged: numeric bounds contain the raw
    range and are not absurdly wider, categories contain the observed values and add at most a
    few, `string` only for high-cardinality text, `nullable` only where values are missing."""
    from mlpipe_flow.checks.rawdata import Unmeasurable, load_raw, spec_columns

    try:
        schema = json.loads(ctx.path(params.schema_path).read_text(encoding="utf-8"))
        columns = [c for c in schema["columns"] if isinstance(c, dict) and "name" in c]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"{params.schema_path} is missing or has no columns: {e}")
    try:
        spec, ids, _features, target = spec_columns(ctx)
        raw = load_raw(ctx, spec)
    except Unmeasurable as e:
        return e.result
    kept = ~raw.col(target).missing if target in raw.frame.columns else None
    problems: list[str] = []
    measured: dict[str, Any] = {}
    for col in columns:
        name = str(col["name"])
        if name not in raw.frame.columns:
            problems.append(f"{name}: not a column of the raw data")
            continue
        why, seen = _misfit(col, raw.col(name), kept, params, name in ids)
        measured[name] = seen
        if why:
            problems.append(f"{name}: {why}")
    ev: dict[str, Any] = {"raw": raw.where, "columns": len(columns), "misfits": problems,
                          "raw_profile": measured}
    if raw.note:
        ev["note"] = raw.note
    if problems:
        return result("failed", f"{params.schema_path} does not fit the raw data {raw.where} in "
                      f"{len(problems)} column(s): {'; '.join(problems[:3])}", **ev)
    return result("passed", f"all {len(columns)} columns of {params.schema_path} fit the raw data "
                  f"{raw.where} (ranges, categories, nullability)", **ev)


def _misfit(col: dict[str, Any], c: Any, kept: Any, params: SchemaFitsParams, is_id: bool
            ) -> tuple[str | None, dict[str, Any]]:
    import numpy as np
    import pandas as pd

    from mlpipe_flow.checks.rawdata import Column

    rows = kept if kept is not None else np.ones(len(c.missing), dtype=bool)
    nums = c.number[rows & c.is_number]
    texts = [str(v) for v in c.text[rows & c.is_text]]
    n_missing = int(c.missing.sum())
    seen: dict[str, Any] = {"missing": n_missing}
    kind = col.get("type")
    if col.get("nullable") is True and n_missing == 0:
        return "nullable, but the raw data has no missing value in it", seen
    if kind in ("integer", "number"):
        if texts:
            return (f"typed {kind}, but the raw data holds text in it, e.g. "
                    f"{sorted(set(texts))[:3]}"), seen
        if not len(nums):
            return None, seen
        lo, hi = float(nums.min()), float(nums.max())
        seen.update(min=lo, max=hi)
        if kind == "integer" and not np.all(np.mod(nums, 1) == 0):
            return "typed integer, but the raw data has fractional values in it", seen
        smin, smax = _number(str(col.get("min"))), _number(str(col.get("max")))
        if smin is None or smax is None:
            return f"min/max {col.get('min')!r}/{col.get('max')!r} are not finite numbers", seen
        eps = 1e-9 * max(1.0, abs(lo), abs(hi))
        if smin > lo + eps or smax < hi - eps:
            return (f"[{smin:g}, {smax:g}] does not contain the raw range [{lo:g}, {hi:g}]"), seen
        slack = params.range_slack * max(hi - lo, abs(lo), abs(hi), 1.0)
        if smin < lo - slack or smax > hi + slack:
            return (f"[{smin:g}, {smax:g}] is far wider than the raw range [{lo:g}, {hi:g}] "
                    f"(at most {slack:g} beyond each end)"), seen
        return None, seen
    distinct_all = {_key(v) for v in c.text[c.is_text]} | {_key(v) for v in c.number[c.is_number]}
    distinct = {_key(v) for v in texts} | {_key(v) for v in nums}
    seen["distinct"] = len(distinct)
    if kind == "category":
        cats = col.get("categories")
        if not isinstance(cats, list) or not cats:
            return "a category column needs its list of categories", seen
        norm = Column.of(pd.Series([None if v is None else str(v) for v in cats], dtype=object))
        allowed = ({_key(v) for v in norm.text[norm.is_text]}
                   | {_key(v) for v in norm.number[norm.is_number]})
        lacking = distinct - allowed
        if lacking:
            return (f"the categories lack {len(lacking)} value(s) the raw data holds, e.g. "
                    f"{sorted(map(str, lacking))[:3]}"), seen
        extra = allowed - distinct_all
        limit = max(params.extra_categories, int(0.1 * len(distinct)))
        if len(extra) > limit:
            return (f"{len(extra)} categories the raw data never holds (at most {limit} allowed),"
                    f" e.g. {sorted(map(str, extra))[:3]}"), seen
        return None, seen
    if kind == "string":
        present = len(texts) + len(nums)
        if len(nums) and not texts and not is_id:
            return (f"typed string (any text), but its {len(nums)} values are numbers: give it a "
                    "numeric type and its range"), seen
        many = len(distinct) > MAX_LISTED or len(distinct) >= params.string_min_share * present
        if len(distinct) <= params.string_min_distinct or not many:
            return (f"typed string (any text), but it holds only {len(distinct)} distinct values "
                    f"in {present} rows: list them as a category (string is for text with more "
                    f"than {params.string_min_distinct} distinct values, at least "
                    f"{params.string_min_share:.0%} of its values or more than {MAX_LISTED})"), seen
    return None, seen


def _key(v: object) -> object:
    return float(v) if isinstance(v, float) else str(v)
