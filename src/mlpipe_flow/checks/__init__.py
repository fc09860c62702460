"""Check kinds: a plain registry dict from kind name to its params model and function.

A check function takes a `CheckContext` and its validated params and returns a
`CheckResult` (passed / failed / error / skipped, a one-line message, evidence).
Heavy libraries are imported inside the functions that need them, never here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.errors import ConfigError
from mlpipe_flow.models import CheckResult, CheckSpec, describe_validation_error


@dataclass(frozen=True)
class CheckKind:
    """A check kind: its params model and function, each given as the object itself or as
    "module:name" (a module of this package), imported only when used - so a check's own
    process imports its module alone, not every check's."""

    params_ref: type[BaseModel] | str
    run_ref: Callable[[CheckContext, Any], CheckResult] | str
    doc: str
    exclusive: bool = False  # it measures time: the gate runs it with no other check beside it

    @property
    def params(self) -> type[BaseModel]:
        return _resolve(self.params_ref)  # type: ignore[no-any-return]

    @property
    def run(self) -> Callable[[CheckContext, Any], CheckResult]:
        return _resolve(self.run_ref)  # type: ignore[no-any-return]


def _resolve(ref: Any) -> Any:
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"mlpipe_flow.checks.{module}"), name)


CHECKS: dict[str, CheckKind] = {
    "exists": CheckKind("files:ExistsParams", "files:exists", "files or folders exist"),
    "pattern": CheckKind("files:PatternParams", "files:pattern", "a regex occurs in files"),
    "pytest": CheckKind("tests:PytestParams", "tests:pytest",
                        "a workspace test file passes, and fails where the gate broke a copy"),
    # measured checks of phases 1-3 (heavy libraries are imported inside the functions)
    "ml_spec": CheckKind("spec_checks:MlSpecParams", "spec_checks:ml_spec",
                         "ml-spec.yaml validates against the MlSpec model"),
    "target_in_data": CheckKind("spec_checks:TargetInDataParams", "spec_checks:target_in_data",
                                "the spec's target (and features) are columns of the data"),
    "splits_schema": CheckKind("data_checks:SplitsSchemaParams", "data_checks:splits_schema",
                               "every cell of the splits complies with the schema"),
    "splits_completeness": CheckKind("data_checks:CompletenessParams",
                                     "data_checks:splits_completeness",
                                     "the share of non-missing cells in the splits"),
    "schema_fits_data": CheckKind("data_checks:SchemaFitsParams", "data_checks:schema_fits_data",
                                  "the schema's ranges, categories and nullability fit the raw data"),
    "splits_from_raw": CheckKind("split_checks:FromRawParams", "split_checks:splits_from_raw",
                                 "every split row is a raw row, once; coverage; sizes vs shares"),
    "splits_disjoint": CheckKind("split_checks:DisjointParams", "split_checks:splits_disjoint",
                                 "no exact or near-duplicate row is in two splits"),
    "split_not_easier": CheckKind("split_checks:NotEasierParams", "split_checks:split_not_easier",
                                  "the test split is not easier than a random one (gate's model)"),
    "dag_structure": CheckKind("dag_checks:DagParams", "dag_checks:dag_structure",
                               "a DAG file loads as in Airflow; ordered tasks run workspace code"),
    "notebook_valid": CheckKind("notebook_checks:NotebookParams", "notebook_checks:notebook_valid",
                                "notebooks run in a fresh kernel and match their saved outputs"),
    "model_beats_baseline": CheckKind("model_checks:BeatsBaselineParams",
                                      "model_checks:model_beats_baseline",
                                      "the gate re-scores the model and its own dummy baseline"),
    "reported_score_matches": CheckKind("model_checks:ReportedScoreParams",
                                        "model_checks:reported_score_matches",
                                        "the reported test score equals the gate's measurement"),
    "model_refit": CheckKind("model_checks:RefitParams", "model_checks:model_refit",
                             "the saved model is what its pipeline learns without the test split"),
    "cv_stability": CheckKind("model_checks:CvStabilityParams", "model_checks:cv_stability",
                              "the gate's own CV spread is small; the reported folds agree"),
    "mlflow_runs": CheckKind("mlflow_checks:MlflowRunsParams", "mlflow_checks:mlflow_runs",
                             "results.json's runs exist in MLflow with its numbers and the model"),
    "model_card_sections": CheckKind("model_card:ModelCardParams", "model_card:model_card_sections",
                                     "the model card has its sections, each with real text"),
    "model_card_claims": CheckKind("model_card:CardClaimsParams", "model_card:model_card_claims",
                                   "every number the model card states is one the gate measured"),
    "feature_importance": CheckKind("model_checks:ImportanceParams",
                                    "model_checks:feature_importance",
                                    "the saved importances rank features as the gate measures"),
    "api_serves": CheckKind("serving_checks:ApiServesParams", "serving_checks:api_serves",
                            "the API starts, /predict agrees with the saved model, bad input 422"),
    "api_load": CheckKind("serving_checks:ApiLoadParams", "serving_checks:api_load",
                          "the API holds an open-loop load within its latency objective", exclusive=True),
    "dockerfile": CheckKind("dockerfile_checks:DockerfileParams", "dockerfile_checks:dockerfile",
                            "Dockerfile: pinned slim base, non-root user, healthcheck; its "
                            "COPY sources exist in the build context"),
    "dockerfile_serves": CheckKind("dockerfile_checks:DockerfileServesParams",
                                   "dockerfile_checks:dockerfile_serves",
                                   "the image's files assembled, its command serves the model, "
                                   "its HEALTHCHECK tracks the API"),
    "k8s_manifests": CheckKind("manifest_checks:K8sParams", "manifest_checks:k8s_manifests",
                               "Kubernetes manifests: kinds, resources, probes, HPA bounds"),
    "ab_drill": CheckKind("ab_checks:AbDrillParams", "ab_checks:ab_drill",
                          "A/B assignment, significance and rollback drilled on gate-made data"),
    "deployment_guide": CheckKind("doc_checks:DeploymentGuideParams", "doc_checks:deployment_guide",
                                  "the deployment guide covers run, build, deploy, roll back"),
    "ci_workflow": CheckKind("ci_checks:CiWorkflowParams", "ci_checks:ci_workflow",
                             "CI workflows validate; jobs run pytest, build the image, deploy"),
    "bandit": CheckKind("security_checks:BanditParams", "security_checks:bandit",
                        "bandit finds no high-severity issue in the generated code"),
    "secrets": CheckKind("security_checks:SecretsParams", "security_checks:secrets",
                         "no secret-like strings in the workspace"),
    "metrics_exposed": CheckKind("monitoring_checks:MetricsExposedParams",
                                 "monitoring_checks:metrics_exposed",
                                 "metrics read by dashboards and alerts have samples and move "
                                 "under traffic"),
    "prometheus_rules": CheckKind("monitoring_checks:PromRulesParams",
                                  "monitoring_checks:prometheus_rules",
                                  "promtool validates config and rules; every alert fires in the "
                                  "gate's drill, none on healthy traffic"),
    "drift_drill": CheckKind("monitoring_checks:DriftDrillParams", "monitoring_checks:drift_drill",
                             "the drift detector flags and names single-feature shifts, quiet on "
                             "clean samples"),
    "grafana_dashboards": CheckKind("dashboard_checks:DashboardParams",
                                    "dashboard_checks:grafana_dashboards",
                                    "dashboards have panels with valid PromQL covering the API and model"),
    "runbook": CheckKind("runbook_checks:RunbookParams", "runbook_checks:runbook",
                         "the on-call runbook has an entry with steps for every alert"),
    "dag_parses": CheckKind("dag_checks:CtDagParams", "dag_checks:dag_parses",
                            "the retraining DAG loads with the spec's schedule; ordered tasks "
                            "run workspace code"),
    "dag_drift_drill": CheckKind("dag_drills:DagDriftDrillParams", "dag_drills:dag_drift_drill",
                                 "the retraining DAG, run on the API's logged inputs: no drift "
                                 "skips retraining, drift starts it"),
    "retrain_drill": CheckKind("ct_checks:RetrainDrillParams", "ct_checks:retrain_drill",
                               "worse data keeps the champion, better data replaces a bad one"),
    "rollback_drill": CheckKind("ct_checks:RollbackDrillParams", "ct_checks:rollback_drill",
                                "promote, roll back, and the previous version serves again"),
    "canary_drill": CheckKind("canary_checks:CanaryDrillParams", "canary_checks:canary_drill",
                              "the canary keeps a healthy version and rolls back a degraded one"),
}


def validate_kind(path: Path, index: int, check: CheckSpec) -> CheckKind:
    kind = CHECKS.get(check.kind)
    if kind is None:
        raise ConfigError(
            f"{path}: checks.{index}.kind: unknown check kind '{check.kind}' "
            f"(known: {', '.join(sorted(CHECKS))})"
        )
    return kind


def validate_params(path: Path, index: int, check: CheckSpec) -> BaseModel:
    kind = validate_kind(path, index, check)
    try:
        return kind.params.model_validate(check.params)
    except ValidationError as e:
        raise ConfigError(
            describe_validation_error(path, e, kind.params, loc_prefix=f"checks.{index}.params.")
        ) from None

def rule(check: CheckSpec) -> str:
    """What a check measures and the numbers it holds the workspace to, in the words the prompt
    shows the agent: its params model's `describe()`, from the gate's validated params, so that
    the prompt and the gate state one contract (tests/test_contract.py renders every phase)."""
    params = CHECKS[check.kind].params.model_validate(check.params)
    describe = getattr(params, "describe", None)
    if describe is None:
        raise ConfigError(f"check kind '{check.kind}' has no describe() on its params model")
    return str(describe())


def format_name(path: Path, index: int, check: CheckSpec) -> str:
    """A check's name with `{param}` fields filled from its YAML params (`{min_margin:.0%}`), so a
    number in a name is the number the check uses."""
    try:
        return check.name.format_map(check.params)
    except KeyError as e:
        raise ConfigError(f"{path}: checks.{index}.name: {{{e.args[0]}}} names no param of "
                          f"this check (params: {', '.join(sorted(check.params)) or 'none'}); "
                          "write literal braces as {{ and }}") from None
    except (ValueError, IndexError, TypeError) as e:
        raise ConfigError(f"{path}: checks.{index}.name: bad format field ({e})") from None


__all__ = ["CHECKS", "CheckContext", "CheckKind", "format_name", "result", "rule",
           "validate_kind", "validate_params"]
