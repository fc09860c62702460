"""The built-in agent's drift detector is calibrated: on clean random halves of small, wide,
categorical and many-class tables it raises no alarm (a Bonferroni correction over the features
plus an effect floor), while a shift of one feature by half a standard deviation (a whole
one on halves under 500 rows), or a fifth of a categorical column moved to another value, is
still flagged and named.

The earlier detector (a test per feature at p < 0.05, no correction) alarmed on the clean test
split of a 569-row, 30-feature table and stalled phase 5; `test_an_uncorrected_detector_alarms`
shows these halves catch that.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from datagen import concrete_like, telco_like

REPO = Path(__file__).resolve().parents[1]
DETECTOR = REPO / "src/mlpipe_flow/builtin/templates/monitoring/drift_detection/detect_drift.py"
SPLITS = 20  # random halves per table


def detector():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("detect_drift_under_test", DETECTOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sk(loader: Callable[..., object]) -> Callable[[Path], pd.DataFrame]:
    def make(_: Path) -> pd.DataFrame:
        frame = loader(as_frame=True).frame  # type: ignore[attr-defined]
        return frame.drop(columns=["target"])
    return make


def generated(maker: Callable[[Path], Path]) -> Callable[[Path], pd.DataFrame]:
    def make(tmp: Path) -> pd.DataFrame:
        frame = pd.read_csv(maker(tmp / "t.csv"))
        return frame.drop(columns=frame.columns[-1])  # the target
    return make


def wide(_: Path) -> pd.DataFrame:
    x, _y = datasets.make_classification(n_samples=800, n_features=40, n_informative=8,
                                         random_state=3)
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(40)])


TABLES: dict[str, Callable[[Path], pd.DataFrame]] = {
    "breast_cancer (569 x 30)": sk(datasets.load_breast_cancer),
    "wine (178 x 13)": sk(datasets.load_wine),
    "diabetes (442 x 10)": sk(datasets.load_diabetes),
    "digits (1797 x 64)": sk(datasets.load_digits),
    "telco-like (3000 x 19, categorical)": generated(telco_like),
    "concrete-like (772 x 8)": generated(concrete_like),
    "wide generated (800 x 40)": wide,
}


def halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = len(frame) // 2
    return frame.iloc[order[:cut]].reset_index(drop=True), \
        frame.iloc[order[cut:]].reset_index(drop=True)


@pytest.mark.parametrize("name", list(TABLES))
def test_no_alarm_on_clean_halves(name: str, tmp_path: Path) -> None:
    dd = detector()
    frame = TABLES[name](tmp_path)
    alarms = []
    for seed in range(SPLITS):
        ref, cur = halves(frame, seed)
        report = dd.detect_drift(ref, cur, list(frame.columns))
        if report["drift_detected"]:
            alarms.append((seed, report["drifted_features"]))
    assert not alarms, f"{name}: false alarms on clean halves: {alarms}"


def shift_std(rows: int) -> float:
    """A shift a sample of this size can show at the family-wise rate: half a standard
    deviation from 500 rows, a whole one below (the gate's drift drill likewise sizes its shift
    by the standard error of its samples)."""
    return 0.5 if rows >= 500 else 1.0


@pytest.mark.parametrize("name", list(TABLES))
def test_a_real_shift_is_detected_and_named(name: str, tmp_path: Path) -> None:
    dd = detector()
    frame = TABLES[name](tmp_path)
    rng = np.random.default_rng(0)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and frame[c].nunique() > 10]
    categorical = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    for seed in range(3):
        ref, cur = halves(frame, seed)
        col = numeric[seed % len(numeric)]
        shifted = cur.copy()
        shifted[col] = shifted[col] + shift_std(len(cur)) * ref[col].std()
        report = dd.detect_drift(ref, shifted, list(frame.columns))
        assert col in report["drifted_features"], (name, col, report["features"][col])
        if categorical:
            cat = categorical[seed % len(categorical)]
            moved = cur.copy()
            top = ref[cat].value_counts().index
            rows = rng.choice(len(moved), size=len(moved) // 5, replace=False)
            values = moved[cat].to_numpy(dtype=object)
            values[rows] = top[-1]  # a fifth of the rows move to the rarest value
            moved[cat] = values
            report = dd.detect_drift(ref, moved, list(frame.columns))
            assert cat in report["drifted_features"], (name, cat, report["features"][cat])


def test_an_uncorrected_detector_alarms() -> None:
    """The halves have the power to catch a miscalibrated detector: a KS test per feature at
    p < 0.05 with no correction and no effect floor alarms on most clean halves of the
    569-row, 30-feature table."""
    dd = detector()
    frame = TABLES["breast_cancer (569 x 30)"](Path("."))
    alarms = 0
    for seed in range(SPLITS):
        ref, cur = halves(frame, seed)
        report = dd.detect_drift(ref, cur, list(frame.columns), alpha=0.05 * 30, min_effect=0.0)
        alarms += report["drift_detected"]
    assert alarms >= SPLITS // 2, alarms
