"""Phase-1 checks that measure: ml-spec.yaml validates against `MlSpec`, and its target
(and feature columns) are columns of the data — read from the data itself."""

from __future__ import annotations

import csv

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult, describe_validation_error

SPEC_FILE = "ml-spec.yaml"


class MlSpecParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = SPEC_FILE

    def describe(self) -> str:
        return (f"`{self.path}` parses as YAML and validates against mlpipe's MlSpec model "
                "(field names, types and allowed values as in the example above; the primary "
                "metric must fit the problem type; a binary classification names its "
                "positive_class; no id column or target among the feature columns).")


def ml_spec(ctx: CheckContext, params: MlSpecParams) -> CheckResult:
    import yaml

    from mlpipe_flow.spec import MlSpec

    p = ctx.path(params.path)
    if not p.is_file():
        return result("failed", f"{params.path} does not exist", path=params.path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        return result("failed", f"{params.path} is not valid YAML: {str(e).splitlines()[0]}")
    if not isinstance(data, dict):
        return result("failed", f"{params.path} must be a mapping, got {type(data).__name__}")
    try:
        spec = MlSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        text = (f"{params.path}: {first['msg'].removeprefix('Value error, ')}"
                if not first["loc"] else describe_validation_error(params.path, e, MlSpec))
        return result("failed", text,
                      errors=[f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()][:10])
    return result("passed", f"{params.path} is a valid spec: {spec.problem_type}, target "
                  f"{spec.target!r}, metric {spec.primary_metric}",
                  problem_type=spec.problem_type, target=spec.target,
                  primary_metric=spec.primary_metric, features=len(spec.feature_columns))


class TargetInDataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = SPEC_FILE
    features_too: bool = Field(default=True, description="every feature column must exist too")

    def describe(self) -> str:
        cols = "the spec's target and every feature column" if self.features_too else "the target"
        return (f"{cols} of `{self.path}` are columns of the data source itself (the gate reads "
                "the column names from the staged file or the database).")


def data_columns(ctx: CheckContext, source: dict[str, object]) -> tuple[str, list[str]]:
    """(what was read, its column names) straight from the data source of the spec."""
    if source.get("kind") == "url":
        from mlpipe_flow.data import data_url, mask_url

        url = data_url(ctx.workspace)
        if not url:
            raise LookupError(".mlpipe/data-url is missing, so the database cannot be read")
        return mask_url(url), sql_columns(url)
    rel = str(source.get("path") or "")
    p = ctx.path(rel)
    if not rel or not p.is_file():
        raise LookupError(f"data_source.path {rel!r} is not a file in the workspace")
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return rel, [str(n) for n in pq.read_schema(p).names]
    with p.open(encoding="utf-8-sig", newline="") as f:
        sample = f.read(65536)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel  # type: ignore[assignment]
        header = next(csv.reader(f, dialect), [])
    return rel, header


def sql_columns(url: str) -> list[str]:
    import sqlalchemy as sa

    from mlpipe_flow.data import split_sql_url

    engine_url, table, query = split_sql_url(url)
    engine = sa.create_engine(engine_url)
    try:
        with engine.connect() as conn:
            if table:
                return [c["name"] for c in sa.inspect(conn).get_columns(table)]
            res = conn.execute(sa.text(f"SELECT * FROM ({query}) AS q LIMIT 0"))
            return list(res.keys())
    finally:
        engine.dispose()


def target_in_data(ctx: CheckContext, params: TargetInDataParams) -> CheckResult:
    spec = ctx.spec() if params.path == SPEC_FILE else None
    if spec is None:
        import yaml

        p = ctx.path(params.path)
        try:
            spec = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("data_source"), dict):
        return result("failed", f"{params.path} is missing or has no data_source")
    target = spec.get("target")
    try:
        where, columns = data_columns(ctx, spec["data_source"])
    except LookupError as e:
        return result("failed", str(e))
    except Exception as e:  # noqa: BLE001 - unreadable data is this check's failure
        return result("failed", f"cannot read the data's columns: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}")
    shown = columns[:30]
    if target not in columns:
        return result("failed", f"target {target!r} is not a column of {where} (measured "
                      f"{len(columns)} columns: {', '.join(map(repr, shown))})",
                      target=target, columns=shown)
    missing = [c for c in spec.get("feature_columns") or [] if c not in columns]
    if params.features_too and missing:
        return result("failed", f"feature columns not in {where}: {missing[:10]}",
                      missing=missing, columns=shown)
    return result("passed", f"target {target!r} is one of the {len(columns)} columns of {where}",
                  target=target, columns=len(columns), source=where)
