"""The built-in agent's reading of the problem text: which column is the target."""

from __future__ import annotations

import csv

import pytest

from conftest import REPO
from datagen import data_file
from mlpipe_flow.builtin.profile import infer_target


def header(path) -> list[str]:  # type: ignore[no-untyped-def]
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


TELCO = data_file("telco_churn.csv")
CONCRETE = data_file("concrete_strength.csv")
EXAMPLE = REPO / "examples" / "churn" / "customers.csv"


@pytest.mark.parametrize(("problem", "data", "target"), [
    ("predict churn", TELCO, "Churn"),
    ("churn prediction for telco customers", TELCO, "Churn"),
    ("forecast monthly charges", TELCO, "MonthlyCharges"),
    ("predict compressive strength", CONCRETE, "Concrete compressive strength(MPa, megapascals) "),
    ("predict the age of concrete", CONCRETE, "Age (day)"),  # the head noun, not the last word
    ("predict customer churn from real-time predictions via API, retraining weekly", EXAMPLE,
     "churned"),
    # "predict X": a column named only outside X is not the target -> ask for --target
    ("predict fraud using contract details", TELCO, None),
])
def test_target_from_the_problem_text(problem: str, data, target: str | None) -> None:  # type: ignore[no-untyped-def]
    assert infer_target(problem, header(data), {"customerID"}) == target


@pytest.mark.parametrize(("problem", "cron"), [
    ("predict churn with daily batch predictions, retraining weekly", "0 2 * * 1"),
    ("nightly scoring, retrain quarterly", "0 2 1 */3 *"),
    ("predict churn, retrained daily", "0 2 * * *"),
    ("predict churn", "0 2 * * 1"),  # the default
])
def test_retraining_schedule_is_the_one_next_to_retrain(problem: str, cron: str) -> None:
    from mlpipe_flow.builtin.phase1 import retraining_from

    assert retraining_from(problem)[0]["schedule"] == cron
