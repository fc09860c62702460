"""The phase-6 drills' precondition: can a model trained on inverted labels be told from the
served champion on this test split? Measured on the champion's own answers inverted as the drill
inverts labels (ct_drills.Inversion), not on the distance to a dummy baseline (which a 67-row
test split cannot give a regression that beats the mean by a quarter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipe_flow.checks.base import CheckContext
from mlpipe_flow.checks.ct_drills import (
    Drill,
    DrillError,
    DrillParams,
    Inversion,
    Served,
    Truth,
    decisive_champion,
    drill_data,
)


def drill_on(tmp_path: Path, frame: pd.DataFrame, spec: dict[str, Any]) -> Drill:
    splits = tmp_path / "ws" / "data" / "splits"
    splits.mkdir(parents=True)
    n = len(frame)
    frame.iloc[: n * 6 // 10].to_csv(splits / "train.csv", index=False)
    frame.iloc[n * 6 // 10: n * 8 // 10].to_csv(splits / "valid.csv", index=False)
    frame.iloc[n * 8 // 10:].to_csv(splits / "test.csv", index=False)
    ctx = CheckContext(workspace=tmp_path / "ws", phase="phase6", timeout_s=60)
    return Drill(ctx=ctx, params=DrillParams(), ws=tmp_path / "ws", root=tmp_path / "drill",
                 spec=spec, seed=0)


def served(truth: Truth, preds: list[Any], probs: list[list[float]] | None = None,
           classes: list[str] | None = None) -> Served:
    score, how = truth.score(preds, probs, classes)
    return Served(name="champion", version="1", fingerprint="x", score=score, rows=len(preds),
                  scored_from=how, se=truth.se(preds, probs, classes, 200),
                  predictions=preds, probabilities=probs, classes=classes)


def test_a_small_regression_champion_that_barely_beats_the_mean_can_still_be_drilled(
        tmp_path: Path) -> None:
    """Diabetes-shaped: 67 test rows, a champion about 3.7 se better than the training mean (the
    old rule's `error`) but far from what inverted labels teach: the drill can run."""
    rng = np.random.default_rng(3)
    n = 335
    x = rng.normal(size=n)
    y = 150 + 45 * x + rng.normal(scale=55, size=n)
    drill = drill_on(tmp_path, pd.DataFrame({"x": x, "y": y}),
                     {"target": "y", "feature_columns": ["x"], "problem_type": "regression",
                      "primary_metric": "rmse"})
    truth = Truth(drill)
    test = truth.frame
    champ = served(truth, (150 + 45 * test["x"]).tolist())
    base = float(np.sqrt(np.mean((test["y"] - y[: n * 8 // 10].mean()) ** 2)))
    assert 0 < (base - champ.score) / champ.se < 4  # better than the mean; the old rule: error
    se = decisive_champion(drill, truth, champ)
    assert se == champ.se
    inverted = truth.score(*Inversion.of(drill, test["y"]).served(champ))[0]
    assert inverted - champ.score > 8 * se


def test_a_champion_near_chance_makes_the_drill_an_error(tmp_path: Path) -> None:
    """For ROC AUC the inverted answers score 1 - AUC: the rule is the champion lying 4 se above
    chance, as before. A champion that learnt almost nothing cannot be drilled."""
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    drill = drill_on(tmp_path, pd.DataFrame({"x": rng.normal(size=n), "y": y}),
                     {"target": "y", "feature_columns": ["x"], "problem_type": "classification",
                      "primary_metric": "roc_auc", "positive_class": 1})
    truth = Truth(drill)
    p = (0.5 + 0.02 * rng.normal(size=len(truth.truth))).clip(0, 1)
    champ = served(truth, [int(v > 0.5) for v in p], [[1 - v, v] for v in p], ["0", "1"])
    with pytest.raises(DrillError, match="cannot tell a model trained on inverted labels"):
        decisive_champion(drill, truth, champ)
    # a champion that learnt the relation passes, and its inversion scores 1 - AUC
    good = [0.9 if t == 1 else 0.2 for t in truth.truth]
    strong = served(truth, [int(v > 0.5) for v in good], [[1 - v, v] for v in good], ["0", "1"])
    decisive_champion(drill, truth, strong)
    inv = truth.score(*Inversion.of(drill, truth.frame["y"]).served(strong))[0]
    assert inv == pytest.approx(1 - strong.score)


def test_inverted_answers_move_each_class_as_the_drill_data_moves_its_labels(
        tmp_path: Path) -> None:
    """Three classes: the drill data rotates a -> b -> c -> a; a perfect champion's answers,
    inverted, predict the rotated class with the probability it gave the original one."""
    labels = np.array(["a", "b", "c"] * 40)
    drill = drill_on(tmp_path, pd.DataFrame({"x": range(120), "y": labels}),
                     {"target": "y", "feature_columns": ["x"], "problem_type": "classification",
                      "primary_metric": "accuracy"})
    truth = Truth(drill)
    probs = [[0.8 if c == t else 0.1 for c in "abc"] for t in truth.truth]
    champ = served(truth, list(truth.truth), probs, ["a", "b", "c"])
    preds, moved, classes = Inversion.of(drill, truth.frame["y"]).served(champ)
    turn = {"a": "b", "b": "c", "c": "a"}
    assert preds == [turn[t] for t in truth.truth]
    assert classes == ["a", "b", "c"]
    assert all(row[classes.index(turn[t])] == 0.8 for row, t in zip(moved, truth.truth, strict=True))
    # the drill's corrupted data uses the same rotation
    data = pd.read_csv(drill_data(drill, "inverted", corrupt=True))
    original = pd.concat([pd.read_csv(tmp_path / "ws/data/splits" / f) for f in
                          ("train.csv", "valid.csv")]).set_index("x")["y"]
    assert (data.set_index("x")["y"] == original.loc[data["x"]].map(turn).values).all()
