"""Phase-2 checks that measure: the gate reads the splits itself (csv module, no pandas) and
validates them against data_quality/schema.json, measures completeness and overlap, parses
the DAG file's AST, and validates the notebook with nbformat."""

from __future__ import annotations

import csv
import hashlib
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


class SplitsSchemaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_path: str = "data_quality/schema.json"
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    min_compliance: float = Field(default=1.0, ge=0, le=1, description="share of valid cells")


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
    if kind == "category" and v not in cats:
        return "is not an allowed category"
    return None


class CompletenessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    min_completeness: float = Field(default=0.95, ge=0, le=1)


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


class DisjointParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    columns_from_spec: bool = Field(default=True, description="hash feature + target columns "
                                    "of ml-spec.yaml (ids excluded); else every column")


def _canon(v: str) -> str:
    x = _number(v)
    return repr(x) if x is not None else v.strip()


def splits_disjoint(ctx: CheckContext, params: DisjointParams) -> CheckResult:
    spec = ctx.spec() if params.columns_from_spec else None
    wanted = ([*spec.get("feature_columns", []), spec.get("target")] if spec else None)
    seen: dict[bytes, str] = {}
    shared: dict[str, int] = {}
    rows_total = 0
    for rel in params.splits:
        p = ctx.path(rel)
        if not p.is_file():
            return result("failed", f"{rel} does not exist")
        header, rows = read_rows(p)
        idx = ([header.index(c) for c in wanted if c in header] if wanted
               else list(range(len(header))))
        if not idx:
            idx = list(range(len(header)))
        mine: set[bytes] = set()
        for row in rows:
            rows_total += 1
            key = hashlib.blake2b("\x1f".join(_canon(row[i]) if i < len(row) else ""
                                              for i in idx).encode(), digest_size=16).digest()
            other = seen.get(key)
            if other is not None and other != rel:
                pair = f"{other} & {rel}"
                shared[pair] = shared.get(pair, 0) + 1
            mine.add(key)
        for key in mine:
            seen.setdefault(key, rel)
    total = sum(shared.values())
    evidence = {"rows": rows_total, "shared_rows": total, "pairs": shared,
                "hashed_columns": "spec features + target" if wanted else "all"}
    if total:
        return result("failed", f"measured {total} row(s) present in two splits ({shared}); "
                      "expected none", **evidence)
    return result("passed", f"no row shared between the {len(params.splits)} splits "
                  f"({rows_total} rows hashed)", **evidence)


class NotebookParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    glob: str = "eda_notebooks/*.ipynb"
    min_code_cells: int = Field(default=3, ge=0)
    require_outputs: bool = True


def notebook_valid(ctx: CheckContext, params: NotebookParams) -> CheckResult:
    import nbformat

    files = sorted(ctx.workspace.glob(params.glob))
    if not files:
        return result("failed", f"no notebook matches {params.glob}")
    measured = {}
    for f in files:
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            nb = nbformat.read(str(f), as_version=4)
            nbformat.validate(nb)
        except Exception as e:  # noqa: BLE001 - any reader/validator error is a failure
            return result("failed", f"{rel} is not a valid notebook: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
        code = [c for c in nb.cells if c.cell_type == "code"]
        with_out = [c for c in code if c.get("outputs")]
        measured[rel] = {"cells": len(nb.cells), "code_cells": len(code),
                         "with_outputs": len(with_out)}
        if len(code) < params.min_code_cells:
            return result("failed", f"{rel}: {len(code)} code cells, expected at least "
                          f"{params.min_code_cells}", notebooks=measured)
        if params.require_outputs and not with_out:
            return result("failed", f"{rel}: no code cell has output (run it and save)",
                          notebooks=measured)
    return result("passed", f"{len(files)} valid notebook(s) (nbformat 4)", notebooks=measured)
