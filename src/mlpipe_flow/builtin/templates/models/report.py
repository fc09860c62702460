"""The evaluation report of a fitted model on the held-out test split: what ml-requirements.md
promises, computed with scikit-learn's own tools and saved where people look for it.

- reports/evaluation.json: the spec's primary and secondary metrics (models/evaluate.py);
  per-class precision, recall, f1 and support (`classification_report`) and the confusion
  matrix; for two classes, the decision threshold chosen for the stated objective and the
  precision/recall at contact budgets (the top 5%, 10%, 20%, 30% and 50% of scored rows);
  calibration (Brier score, expected calibration error, the reliability-curve bins of
  `calibration_curve`); for a regression, a residual summary; the same metrics per group of
  each of the spec's `group_columns`.
- artifacts/decision_threshold.json (two classes): {"threshold", "positive_class", "objective",
  "model_sha256", ...}: act positive when the positive class's probability is >= threshold.
  The API returns that probability with every answer (its label stays the model's own
  `predict`); whoever acts on the answers applies the threshold.
- reports/figures/*.png: ROC and precision-recall curves, calibration curve, confusion matrix
  (classification); predicted-vs-actual and residuals (regression); feature importance.
- notebooks/02_model_evaluation.ipynb: the above shown, executed in a Jupyter kernel.

The decision threshold is chosen on data the reported model did not see: out-of-fold
probabilities of the same pipeline on the train+valid rows (`cross_val_predict`, the method of
sklearn's TunedThresholdClassifierCV), then measured once on the test split. Objectives:
`f1` (the default: maximise the positive class's F1), `top_share:0.1` (contact budget: flag at
most 10% of the rows, the highest-scored), `min_precision:0.8` (the most recall with precision
>= 0.8), `min_recall:0.8` (the most precision with recall >= 0.8).

Run: `python -m models.report [--objective f1] [--no-notebook]` (after
`python -m models.train_model`; reads artifacts/model.joblib, data/splits/*.csv and, when it
exists, interpretability/feature_importance.json). The objective's default can also be set with
the environment variable DECISION_OBJECTIVE.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from models.evaluate import evaluate, group_label

ROOT = Path(__file__).resolve().parents[1]
N_BINS = 10  # reliability-curve bins (uniform on [0, 1])
BUDGETS = (0.05, 0.10, 0.20, 0.30, 0.50)  # shares of scored rows contacted
CV_FOLDS = 5
SELECT_MAX_ROWS = 20_000  # rows the out-of-fold threshold search runs on, at most
TOP_FEATURES = 20
NOTEBOOK = "notebooks/02_model_evaluation.ipynb"
CELL_TIMEOUT_S = 120


def label(v: Any) -> str:
    """A class as text: 1, 1.0, np.int64(1) and '1' are the same class '1'."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def as_model_labels(y: Any, classes: list[Any]) -> np.ndarray:
    """The true labels as the model knows them ('1' read from a CSV as text is the class 1)."""
    by_text = {label(c): c for c in classes}
    known = np.asarray(classes)
    return np.asarray([by_text.get(label(v), v) for v in y],
                      dtype=object if known.dtype.kind in "OUS" else known.dtype)


def positive_of(spec: dict[str, Any], classes: list[Any]) -> Any:
    """The spec's positive class as one of the model's classes (the last class when unset)."""
    wanted = spec.get("positive_class")
    if wanted is None:
        return classes[-1]
    for c in classes:
        if label(c) == label(wanted):
            return c
    raise ValueError(f"positive class {wanted!r} is not one of the model's classes {classes}")


def plain(v: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python ones, NaN as None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --- the decision threshold ---------------------------------------------------------------

def parse_objective(objective: str) -> tuple[str, float | None]:
    kind, _, value = objective.partition(":")
    if kind == "f1" and not value:
        return kind, None
    if kind in ("top_share", "min_precision", "min_recall") and value:
        target = float(value)
        if 0 < target <= 1:
            return kind, target
    raise ValueError(f"unknown objective {objective!r}: use f1, top_share:<share>, "
                     "min_precision:<p> or min_recall:<r> (shares and rates in (0, 1])")


def describe(objective: str) -> str:
    kind, target = parse_objective(objective)
    if kind == "top_share":
        return f"contact budget: flag at most {target:.0%} of rows, the highest-scored"
    if kind == "min_precision":
        return f"the highest recall with precision >= {target}"
    if kind == "min_recall":
        return f"the highest precision with recall >= {target}"
    return "maximise the F1 score of the positive class"


def at_threshold(is_pos: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """What predicting positive when proba >= threshold does on these rows."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    flagged = proba >= threshold
    return {"rows": int(len(proba)), "flagged_share": float(flagged.mean()),
            "precision": float(precision_score(is_pos, flagged, zero_division=0)),
            "recall": float(recall_score(is_pos, flagged, zero_division=0)),
            "f1": float(f1_score(is_pos, flagged, zero_division=0))}


def objective_met(kind: str, target: float | None, measured: dict[str, Any]) -> bool:
    if target is None:  # f1 is maximised, not constrained
        return True
    if kind == "top_share":
        return bool(measured["flagged_share"] <= target + 1e-12)
    if kind == "min_precision":
        return bool(measured["precision"] >= target)
    if kind == "min_recall":
        return bool(measured["recall"] >= target)
    return True


def choose_threshold(is_pos: np.ndarray, proba: np.ndarray, objective: str = "f1") -> float:
    """The threshold on the positive class's probability that best serves `objective` on these
    rows (`precision_recall_curve`'s candidates: positive when proba >= threshold). When a
    constraint cannot be met, the threshold that comes closest (the highest precision, the
    highest recall, the fewest rows flagged)."""
    from sklearn.metrics import precision_recall_curve

    kind, target = parse_objective(objective)
    precision, recall, thresholds = precision_recall_curve(is_pos, proba)
    p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    if kind == "f1":
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        return float(thresholds[int(np.argmax(f1))])
    assert target is not None  # every objective but f1 states one
    if kind == "top_share":  # thresholds increase, so the share flagged decreases
        flagged = 1.0 - np.searchsorted(np.sort(proba), thresholds, side="left") / len(proba)
        ok = flagged <= target + 1e-12
        return float(thresholds[int(np.argmax(ok))] if ok.any() else thresholds[-1])
    held, best = (p, r) if kind == "min_precision" else (r, p)
    ok = np.flatnonzero(held >= target)
    if not len(ok):
        return float(thresholds[int(np.argmax(held))])
    return float(thresholds[ok[int(np.argmax(best[ok]))]])


def oof_proba(model: Any, X: pd.DataFrame, y: pd.Series, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of the positive class from clones of `model` (stratified
    `CV_FOLDS`-fold, on at most SELECT_MAX_ROWS rows), and the matching truth."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    if len(X) > SELECT_MAX_ROWS:
        keep = X.sample(n=SELECT_MAX_ROWS, random_state=0).index
        X, y = X.loc[keep], y.loc[keep]
    classes = list(model.classes_)
    truth = as_model_labels(y, classes)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
    # gradient boosting's OpenMP threads spin on a busy machine: one thread per fit, as training
    with threadpool_limits(limits=1, user_api="openmp"):
        proba = cross_val_predict(clone(model), X, truth, cv=folds, method="predict_proba")
    return truth == positive, proba[:, classes.index(positive)]


def decision(model: Any, is_pos: np.ndarray, proba: np.ndarray, positive: Any, objective: str,
             select: tuple[pd.DataFrame, pd.Series] | None) -> dict[str, Any]:
    kind, target = parse_objective(objective)
    if select is not None:
        sel_pos, sel_proba = oof_proba(model, select[0], select[1], positive)
        chosen_on = (f"out-of-fold probabilities on {len(sel_proba)} rows the model was fitted "
                     f"on ({CV_FOLDS}-fold cross_val_predict)")
    else:
        sel_pos, sel_proba = is_pos, proba
        chosen_on = "the test split itself (no selection data given: the test figures are optimistic)"
    threshold = choose_threshold(sel_pos, sel_proba, objective)
    on_test = at_threshold(is_pos, proba, threshold)
    return {"threshold": threshold, "positive_class": plain(positive), "objective": objective,
            "objective_description": describe(objective), "chosen_on": chosen_on,
            "on_selection": at_threshold(sel_pos, sel_proba, threshold), "on_test": on_test,
            "met_on_test": objective_met(kind, target, on_test),
            "default_0_5_on_test": at_threshold(is_pos, proba, 0.5)}


def budget_table(is_pos: np.ndarray, proba: np.ndarray) -> list[dict[str, Any]]:
    """Precision, recall and lift when the top `share` of scored rows are contacted."""
    order = np.argsort(-proba, kind="stable")
    base = float(is_pos.mean()) or float("nan")
    rows = []
    for share in BUDGETS:
        k = max(1, int(round(share * len(proba))))
        hits = int(is_pos[order[:k]].sum())
        rows.append({"share": share, "contacted": k, "positives_caught": hits,
                     "precision": hits / k, "recall": hits / max(1, int(is_pos.sum())),
                     "lift": plain((hits / k) / base)})
    return rows


# --- calibration ----------------------------------------------------------------------------

def calibration(correct: np.ndarray, confidence: np.ndarray) -> dict[str, Any]:
    """Reliability-curve bins as `calibration_curve` forms them (uniform, N_BINS) with their row
    counts, and the expected calibration error: the row-weighted mean |observed - predicted|."""
    from sklearn.calibration import calibration_curve

    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    ids = np.searchsorted(edges[1:-1], confidence)  # calibration_curve's own binning
    counts = np.bincount(ids, minlength=N_BINS)
    observed, predicted = calibration_curve(correct, confidence, n_bins=N_BINS, strategy="uniform")
    filled = np.flatnonzero(counts)
    bins = [{"lower": float(edges[b]), "upper": float(edges[b + 1]), "rows": int(counts[b]),
             "mean_predicted": float(pr), "observed": float(ob)}
            for b, pr, ob in zip(filled, predicted, observed, strict=True)]
    ece = float(np.sum(counts[filled] / len(confidence) * np.abs(observed - predicted)))
    return {"n_bins": N_BINS, "strategy": "uniform", "expected_calibration_error": ece,
            "bins": bins}


# --- figures ----------------------------------------------------------------------------------

def _figure(size: tuple[float, float] = (5.5, 4.5)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in any process

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots()


def _save(fig: Any, root: Path, name: str, figures: dict[str, str]) -> None:
    rel = f"reports/figures/{name}.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(root / rel, dpi=100)
    figures[name] = rel


def classification_figures(root: Path, truth: np.ndarray, proba: np.ndarray, pred: np.ndarray,
                           classes: list[Any], positive: Any | None,
                           operating: dict[str, Any] | None = None) -> dict[str, str]:
    """`operating`: the decision threshold's measures on these rows, marked on the curves."""
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    figures: dict[str, str] = {}
    # one curve for two classes (the positive one), one per class (one-vs-rest) otherwise
    shown = [positive] if positive is not None else classes
    axes = {"roc_curve": (RocCurveDisplay, "false positive rate", "true positive rate (recall)"),
            "precision_recall_curve": (PrecisionRecallDisplay, "recall", "precision")}
    for name, (display, xlabel, ylabel) in axes.items():
        fig, ax = _figure()
        for c in shown:
            display.from_predictions(truth == c, proba[:, classes.index(c)], ax=ax,
                                     name=f"class {label(c)}")
        if operating is not None:
            neg = truth != positive
            fpr = float(np.mean(proba[neg, classes.index(positive)] >= operating["threshold"]))
            x = fpr if name == "roc_curve" else operating["recall"]
            y = operating["recall"] if name == "roc_curve" else operating["precision"]
            ax.plot([x], [y], "o", color="black", label=f"threshold {operating['threshold']:.3f}")
            ax.legend(loc="lower right" if name == "roc_curve" else "lower left")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{name.replace('_', ' ')} (test split)")
        _save(fig, root, name, figures)
    fig, ax = _figure()
    if positive is not None:
        CalibrationDisplay.from_predictions(truth == positive, proba[:, classes.index(positive)],
                                            n_bins=N_BINS, ax=ax, name=f"class {label(positive)}")
    else:  # top-label calibration: the predicted class's probability against being right
        CalibrationDisplay.from_predictions(pred == truth, proba.max(axis=1), n_bins=N_BINS,
                                            ax=ax, name="predicted class")
    ax.set(xlabel="mean predicted probability",
           ylabel="observed share of positives" if positive is not None
           else "observed share of correct predictions", title="calibration (test split)")
    _save(fig, root, "calibration_curve", figures)
    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(truth, pred, labels=classes,
                                            display_labels=[label(c) for c in classes],
                                            ax=ax, colorbar=False)
    ax.set_title("confusion matrix (test split)")
    _save(fig, root, "confusion_matrix", figures)
    return figures


def regression_figures(root: Path, y: np.ndarray, pred: np.ndarray) -> dict[str, str]:
    from sklearn.metrics import PredictionErrorDisplay

    figures: dict[str, str] = {}
    for name, kind in (("predicted_vs_actual", "actual_vs_predicted"),
                       ("residuals", "residual_vs_predicted")):
        fig, ax = _figure()
        PredictionErrorDisplay.from_predictions(y, pred, kind=kind, ax=ax, random_state=0)
        ax.set_title(f"{name.replace('_', ' ')} (test split)")
        _save(fig, root, name, figures)
    return figures


def importance_figure(root: Path, importances: dict[str, float]) -> dict[str, str]:
    top = sorted(importances.items(), key=lambda t: -abs(t[1]))[:TOP_FEATURES][::-1]
    fig, ax = _figure((6.5, max(2.5, 0.3 * len(top) + 1.2)))
    ax.barh([f[:40] for f, _ in top], [v for _, v in top])
    ax.set_xlabel("importance")
    ax.set_title("feature importance")
    figures: dict[str, str] = {}
    _save(fig, root, "feature_importance", figures)
    return figures


# --- the report ---------------------------------------------------------------------------------

def per_class(truth: np.ndarray, pred: np.ndarray, classes: list[Any]) -> list[dict[str, Any]]:
    from sklearn.metrics import classification_report

    names = [label(c) for c in classes]
    rep = classification_report(truth, pred, labels=classes, target_names=names,
                                output_dict=True, zero_division=0)
    return [{"class": n, "precision": rep[n]["precision"], "recall": rep[n]["recall"],
             "f1": rep[n]["f1-score"], "support": int(rep[n]["support"])} for n in names]


def residual_summary(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    res = y - pred  # positive: the model predicted too low
    q = np.quantile(res, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"mean": float(res.mean()), "std": float(res.std()), "mae": float(np.abs(res).mean()),
            "rmse": float(np.sqrt(np.mean(res ** 2))), "max_abs": float(np.abs(res).max()),
            **{f"q{int(p * 100):02d}": float(v) for p, v in zip((0.05, 0.25, 0.5, 0.75, 0.95), q,
                                                                 strict=True)}}


def group_tables(model: Any, frame: pd.DataFrame, spec: dict[str, Any],
                 groups: pd.DataFrame | None, threshold: dict[str, Any] | None,
                 ) -> dict[str, list[dict[str, Any]]]:
    """Per group of each group column (in the test features or `groups`, aligned with them):
    the spec's metrics, and the decision threshold's precision/recall (two classes) or the
    residual bias (regression)."""
    source = frame if groups is None else groups.set_axis(frame.index)
    target = spec["target"]
    out: dict[str, list[dict[str, Any]]] = {}
    for col in spec.get("group_columns") or []:
        if col not in source.columns:
            continue
        labels = source[col].map(group_label)
        rows = []
        for level in sorted(labels.unique()):
            part = frame[labels == level]
            row: dict[str, Any] = {"group": level, "rows": int(len(part)),
                                   "share": float(len(part) / len(frame)),
                                   "metrics": evaluate(model, part, spec)}
            X = part[spec["feature_columns"]]
            if threshold is not None:
                classes = list(model.classes_)
                positive = classes[[label(c) for c in classes].index(label(threshold["positive_class"]))]
                is_pos = as_model_labels(part[target], classes) == positive
                proba = model.predict_proba(X)[:, classes.index(positive)]
                row.update(positive_share=float(is_pos.mean()),
                           at_threshold=at_threshold(is_pos, proba, threshold["threshold"]))
            elif spec["problem_type"] == "regression":
                row["residual_mean"] = float(np.mean(part[target].to_numpy(float) - model.predict(X)))
            rows.append(row)
        out[col] = rows
    return out


def write_evaluation(model: Any, X_test: pd.DataFrame, y_test: pd.Series, spec: dict[str, Any],
                     root: Path, importances: dict[str, float] | None = None,
                     groups: pd.DataFrame | None = None, objective: str = "f1",
                     select: tuple[pd.DataFrame, pd.Series] | None = None,
                     notebook: bool = True, model_file: Path | None = None) -> dict[str, Any]:
    """Everything the module docstring lists, written under `root`; returns evaluation.json's
    content. `select`: the rows the decision threshold is chosen on (out of fold), e.g. the
    train+valid rows the model was fitted on; without it, the test split (said in the report).
    `model_file`: the saved `model`, whose sha256 the threshold file records (a reader can then
    tell a threshold that belongs to another model)."""
    from sklearn.metrics import confusion_matrix

    root = Path(root)
    frame = X_test.copy()
    frame[spec["target"]] = y_test.to_numpy()
    report: dict[str, Any] = {"problem_type": spec["problem_type"], "target": spec["target"],
                              "rows": int(len(X_test)), "primary_metric": spec["primary_metric"],
                              "metrics": evaluate(model, frame, spec)}
    threshold = None
    if spec["problem_type"] == "regression":
        y = y_test.to_numpy(float)
        pred = np.asarray(model.predict(X_test), dtype=float)
        report["residuals"] = residual_summary(y, pred)
        figures = regression_figures(root, y, pred)
    else:
        classes = list(model.classes_)
        truth = as_model_labels(y_test, classes)
        proba = model.predict_proba(X_test)
        binary = len(classes) == 2
        positive = positive_of(spec, classes) if binary else None
        if binary:
            is_pos, p_pos = truth == positive, proba[:, classes.index(positive)]
            threshold = decision(model, is_pos, p_pos, positive, objective, select)
            negative = next(c for c in classes if c != positive)
            pred = np.asarray([positive if p >= threshold["threshold"] else negative
                               for p in p_pos], dtype=truth.dtype)
            report["decision_threshold"] = threshold
            report["budgets"] = budget_table(is_pos, p_pos)
            report["calibration"] = {"brier_score": _brier(is_pos, p_pos),
                                     **calibration(is_pos, p_pos)}
        else:
            pred = np.asarray(model.predict(X_test))
            report["calibration"] = {"brier_score": _brier(truth, proba, classes),
                                     "kind": "top-label (the predicted class's probability)",
                                     **calibration(pred == truth, proba.max(axis=1))}
        report["decision_rule"] = ("positive when P(positive) >= decision_threshold.threshold"
                                   if binary else "the most probable class (argmax)")
        report["per_class"] = per_class(truth, pred, classes)
        report["per_class_default_predict"] = per_class(truth, np.asarray(model.predict(X_test)),
                                                        classes)
        report["confusion_matrix"] = {"labels": [label(c) for c in classes],
                                      "matrix": confusion_matrix(truth, pred, labels=classes).tolist()}
        operating = ({"threshold": threshold["threshold"], **threshold["on_test"]}
                     if threshold is not None else None)
        figures = classification_figures(root, truth, proba, pred, classes, positive, operating)
    report["groups"] = group_tables(model, frame, spec, groups, threshold)
    if importances:
        figures.update(importance_figure(root, importances))
    report["figures"] = figures
    (root / "reports").mkdir(parents=True, exist_ok=True)
    if threshold is not None:
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        saved = {k: threshold[k] for k in ("threshold", "positive_class", "objective", "chosen_on")}
        if model_file is not None:
            saved["model_sha256"] = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()
        (root / "artifacts/decision_threshold.json").write_text(json.dumps(saved, indent=2) + "\n")
    if notebook:
        missing = [m for m in ("nbformat", "nbclient", "ipykernel")
                   if importlib.util.find_spec(m) is None]
        if missing:
            print(f"warning: not installed: {', '.join(missing)}; {NOTEBOOK} not written",
                  flush=True)
            report["notebook_skipped"] = f"not installed: {', '.join(missing)}"
            notebook = False
    report["notebook"] = NOTEBOOK if notebook else None
    (root / "reports/evaluation.json").write_text(json.dumps(report, indent=2, default=plain) + "\n")
    if notebook:
        write_notebook(root)
    return report


def _brier(truth: np.ndarray, proba: np.ndarray, classes: list[Any] | None = None) -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(truth, proba, labels=classes) if classes is not None
                 else brier_score_loss(truth, proba))


# --- the notebook -------------------------------------------------------------------------------

CELLS: list[tuple[str, str]] = [
    ("markdown", "# Model evaluation\n\nThe held-out test split, as `python -m models.report` "
                 "measured it (`reports/evaluation.json`, figures in `reports/figures/`). "
                 "Re-run: `python -m models.report`."),
    ("code", "import json\nfrom pathlib import Path\n\nimport pandas as pd\n"
             "from IPython.display import Image, Markdown, display\n\n"
             "# the project folder: where reports/evaluation.json is (here or one folder above)\n"
             "ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents]\n"
             "            if (p / 'reports/evaluation.json').is_file())\n"
             "ev = json.loads((ROOT / 'reports/evaluation.json').read_text())\n"
             "print(f\"{ev['problem_type']}: target {ev['target']}, {ev['rows']} test rows\")\n"
             "pd.Series(ev['metrics'], name='test split').to_frame()"),
    ("markdown", "## Per class and decision threshold"),
    ("code", "if 'per_class' in ev:\n"
             "    print('decision rule:', ev['decision_rule'])\n"
             "    display(pd.DataFrame(ev['per_class']).set_index('class').round(4))\n"
             "if 'decision_threshold' in ev:\n"
             "    t = ev['decision_threshold']\n"
             "    print(f\"threshold {t['threshold']:.4f} for class {t['positive_class']}: \"\n"
             "          f\"{t['objective_description']}; chosen on {t['chosen_on']}\")\n"
             "    display(pd.DataFrame({k: t[k] for k in ('on_selection', 'on_test', "
             "'default_0_5_on_test')}).T.round(4))\n"
             "    display(Markdown('Contact budgets (top share of scored rows):'))\n"
             "    display(pd.DataFrame(ev['budgets']).round(4))\n"
             "if 'residuals' in ev:\n"
             "    display(pd.Series(ev['residuals'], name='residual (actual - predicted)').round(4))"),
    ("markdown", "## Calibration"),
    ("code", "if 'calibration' in ev:\n"
             "    c = ev['calibration']\n"
             "    print(f\"Brier score {c['brier_score']:.4f}; expected calibration error \"\n"
             "          f\"{c['expected_calibration_error']:.4f}\")\n"
             "    display(pd.DataFrame(c['bins']).round(4))\n"
             "else:\n"
             "    print('regression: no class probabilities to calibrate')"),
    ("markdown", "## Per group"),
    ("code", "for col, rows in ev['groups'].items():\n"
             "    display(Markdown(f'### {col}'))\n"
             "    display(pd.json_normalize(rows).set_index('group').round(4))\n"
             "if not ev['groups']:\n"
             "    print('no group columns in ml-spec.yaml')"),
    ("markdown", "## Figures"),
    ("code", "for name, rel in ev['figures'].items():\n"
             "    display(Markdown(f\"### {name.replace('_', ' ')}\"))\n"
             "    display(Image(filename=str(ROOT / rel)))"),
]


def write_notebook(root: Path) -> Path:
    """notebooks/02_model_evaluation.ipynb, executed top to bottom from its folder in a kernel of
    this interpreter (a kernel spec made for the run: an installed `python3` spec may name
    another Python), and saved with its outputs."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [v4.new_markdown_cell(s) if kind == "markdown" else v4.new_code_cell(s)
                for kind, s in CELLS]
    path = root / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="model-eval-") as tmp:
        spec_dir = Path(tmp) / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        km = KernelManager(kernel_name="python3", connection_file=str(Path(tmp) / "conn.json"),
                           transport="ipc" if os.name == "posix" else "tcp",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]))
        env = {**os.environ, "MPLCONFIGDIR": str(Path(tmp) / "mpl"),
               "IPYTHONDIR": str(Path(tmp) / "ipython"), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                           resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb))
    return path


# --- the command --------------------------------------------------------------------------------

def load_importances(root: Path) -> dict[str, float] | None:
    path = root / "interpretability/feature_importance.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {f["feature"]: float(f["importance"]) for f in data.get("features", [])}


def split(root: Path, name: str) -> pd.DataFrame:
    parquet = root / f"data/splits/{name}.parquet"
    if parquet.is_file():
        return pd.read_parquet(parquet)
    return pd.read_csv(root / f"data/splits/{name}.csv", low_memory=False)


def run(root: Path = ROOT, objective: str = "f1", notebook: bool = True) -> dict[str, Any]:
    import joblib
    import yaml

    spec = yaml.safe_load((root / "ml-spec.yaml").read_text(encoding="utf-8"))
    model = joblib.load(root / "artifacts/model.joblib")
    features, target = list(spec["feature_columns"]), spec["target"]
    test = split(root, "test")
    select = None
    if spec["problem_type"] != "regression" and len(getattr(model, "classes_", [])) == 2:
        dev = pd.concat([split(root, "train"), split(root, "valid")], ignore_index=True)
        select = (dev[features], dev[target])
    return write_evaluation(model, test[features], test[target], spec, root,
                            importances=load_importances(root), objective=objective,
                            select=select, notebook=notebook,
                            model_file=root / "artifacts/model.joblib")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.report", description=__doc__.split("\n")[0])
    parser.add_argument("--objective", default=os.environ.get("DECISION_OBJECTIVE", "f1"),
                        help="f1 | top_share:<share> | min_precision:<p> | min_recall:<r>")
    parser.add_argument("--no-notebook", action="store_true", help="skip the executed notebook")
    args = parser.parse_args(argv)
    parse_objective(args.objective)  # a bad objective fails before any work
    report = run(ROOT, args.objective, notebook=not args.no_notebook)
    t = report.get("decision_threshold")
    if t:
        print(f"decision threshold {t['threshold']:.4f} ({t['objective_description']}); "
              f"test precision {t['on_test']['precision']:.3f}, recall {t['on_test']['recall']:.3f}")
    print(f"wrote reports/evaluation.json, {len(report['figures'])} figures"
          + (f", {report['notebook']}" if report["notebook"] else ""))


if __name__ == "__main__":
    main()
