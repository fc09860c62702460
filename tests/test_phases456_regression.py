"""Phases 4-6 on a regression problem (concrete strength: long column names with spaces,
parentheses and commas; a lower-is-better metric)."""

from __future__ import annotations

from pathlib import Path

from ml_workspace import built, check


def test_regression_workspace_serves_monitors_and_retrains(tmp_path: Path) -> None:
    ws = built(tmp_path / "ws", ["phase4", "phase5", "phase6"], dataset="concrete")
    for kind in ("api_serves", "drift_drill", "retrain_drill", "metrics_exposed",
                 "prometheus_rules", "dag_parses", "dockerfile", "k8s_manifests"):
        r = check(ws, kind)
        assert r.status == "passed", (kind, r.message, r.evidence)
