"""`ml-spec.yaml`: the machine-readable spec phase 1 writes and every later phase reads.

Validated with pydantic (`extra="forbid"`), so a typo in a field name is an error that
names the field. No heavy imports here: the gate of phase 1 imports this module.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProblemType = Literal["binary_classification", "multiclass_classification", "regression"]

CLASSIFICATION_METRICS = {"roc_auc", "f1_macro", "f1", "accuracy", "balanced_accuracy",
                          "precision", "recall", "average_precision", "log_loss"}
REGRESSION_METRICS = {"rmse", "mae", "r2", "mape"}
#: metrics where a smaller value is better (errors and losses)
LOWER_IS_BETTER = {"rmse", "mae", "mape", "log_loss"}
Metric = Literal["roc_auc", "f1_macro", "f1", "accuracy", "balanced_accuracy", "precision",
                 "recall", "average_precision", "log_loss", "rmse", "mae", "r2", "mape"]

CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class DataSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["file", "url"]
    path: str | None = Field(default=None, description="workspace-relative staged copy (files)")
    url: str | None = Field(default=None, description="database URL, password masked (urls)")
    table: str | None = None
    query: str | None = None
    format: Literal["csv", "parquet", "sql"] | None = None
    sha256: str | None = None

    @model_validator(mode="after")
    def _where(self) -> DataSource:
        if self.kind == "file" and not self.path:
            raise ValueError("a file data source needs `path`")
        if self.kind == "url" and not self.url:
            raise ValueError("a url data source needs `url`")
        return self


class Serving(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["realtime", "batch"]
    latency_p95_ms: float = Field(gt=0)
    throughput_rps: float = Field(gt=0)


class Retraining(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule: str = Field(description="a five-field cron expression, e.g. '0 2 * * 1'")
    triggers: list[str] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if v.startswith("@") and len(fields) == 1:
            return v
        if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"'{v}' is not a five-field cron expression (e.g. '0 2 * * 1')")
        return v


class SplitShares(BaseModel):
    """The share of the kept rows each split holds (the gate measures the splits against it)."""

    model_config = ConfigDict(extra="forbid")
    train: float = Field(default=0.70, gt=0, lt=1)
    valid: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> SplitShares:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split shares must add up to 1 (train + valid + test = {total:g})")
        return self


class MlSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    problem: str = Field(min_length=1)
    problem_type: ProblemType
    target: str = Field(min_length=1)
    primary_metric: Metric
    metric_threshold: float | None = None
    secondary_metrics: list[str] = Field(default_factory=list)
    id_columns: list[str] = Field(default_factory=list)
    feature_columns: list[str] = Field(min_length=1)
    positive_class: str | int | float | bool | None = None
    classes: list[str | int | float | bool] | None = None
    data_source: DataSource
    serving: Serving
    retraining: Retraining
    splits: SplitShares = Field(default_factory=SplitShares)
    group_columns: list[str] = Field(
        default_factory=list,
        description="columns whose groups the model card reports one by one (fairness); the "
                    "gate measures the model on each group itself")

    @model_validator(mode="after")
    def _consistent(self) -> MlSpec:
        if self.target in self.feature_columns:
            raise ValueError(f"the target '{self.target}' is also listed in feature_columns")
        leaked = sorted(set(self.id_columns) & set(self.feature_columns))
        if leaked:
            raise ValueError(f"id columns {leaked} are also listed in feature_columns")
        is_reg = self.problem_type == "regression"
        if is_reg and self.primary_metric not in REGRESSION_METRICS:
            raise ValueError(f"primary_metric '{self.primary_metric}' does not fit a regression "
                             f"(use one of {sorted(REGRESSION_METRICS)})")
        if not is_reg and self.primary_metric not in CLASSIFICATION_METRICS:
            raise ValueError(f"primary_metric '{self.primary_metric}' does not fit a "
                             f"classification (use one of {sorted(CLASSIFICATION_METRICS)})")
        bad_groups = sorted(set(self.group_columns) & {self.target, *self.id_columns})
        if bad_groups:
            raise ValueError(f"group_columns {bad_groups} may not be the target or an id column")
        if self.problem_type == "binary_classification" and self.positive_class is None:
            raise ValueError("a binary classification needs `positive_class`")
        return self


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def margin(metric: str, model: float, baseline: float) -> float:
    """How far a model beats a baseline (the contract's formula; docs/gates.md, "The baseline margin"):
    the share of the headroom above the baseline it closes for scores bounded by 1, the
    relative error reduction for errors."""
    if metric in LOWER_IS_BETTER:
        return (baseline - model) / baseline if baseline > 0 else 0.0
    head = 1.0 - baseline
    return (model - baseline) / head if head > 0 else 0.0


def margin_formula(metric: str) -> str:
    return "(b - m) / b" if metric in LOWER_IS_BETTER else "(m - b) / (1 - b)"
