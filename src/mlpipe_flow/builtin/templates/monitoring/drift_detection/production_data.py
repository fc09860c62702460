"""What production tells us: the inputs the API logged, and the outcomes labelled since.

    python monitoring/drift_detection/production_data.py [--out data/retrain/train.csv]

Two folders of the project, both outside version control (.gitignore):

- data/production/inputs-*.jsonl — written by the API (deployment/api/): a sample of the
  /predict inputs, one JSON object per line holding the feature values and `ts` (the time of
  the request), in bounded files. The drift job (detect_drift.py) compares them with the
  training data. Lines that are not JSON objects (a file cut short by a restart) are skipped
  and counted.
- data/feedback/*.csv — labelled outcomes, dropped here by whoever learns them (a CRM export,
  a labelling tool, a nightly job). Each file has the target column and either every feature
  column of the model (a labelled row as it was served) or the id column(s) of ml-spec.yaml
  (the features are then looked up: newest logged input with that id, else the ingested data
  in data/interim/dataset.csv). Rows whose features cannot be found are dropped and counted.

Run as a script it writes the training set for the next retraining: the training split plus
the labelled feedback (a feedback row replaces the training row with the same id; rows whose
id is in the hold-out split are left out, so the champion/challenger comparison stays on unseen
rows), and prints a JSON summary. Exit status 0, 2 on bad input (a feedback file without the
target column).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "data" / "production"
FEEDBACK = ROOT / "data" / "feedback"
MAX_ROWS = 50_000  # the newest logged inputs read


class BadFeedback(ValueError):
    """A feedback file the retraining cannot use."""


def model_meta() -> dict[str, Any]:
    return json.loads((ROOT / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))


def id_columns() -> list[str]:
    import yaml

    try:
        spec = yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8")) or {}
    except OSError:
        return []
    return [str(c) for c in spec.get("id_columns") or []]


def read_inputs(folder: Path = PRODUCTION, max_rows: int = MAX_ROWS
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The newest `max_rows` logged inputs (sorted by `ts`), and what was read: files, rows,
    skipped lines. An absent or empty folder gives an empty frame, not an error."""
    files = sorted(folder.glob("inputs-*.jsonl")) if folder.is_dir() else []
    rows: list[dict[str, Any]] = []
    skipped = 0
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            skipped += 1
            continue
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                skipped += 1
    frame = pd.DataFrame(rows)
    if "ts" in frame.columns:
        order = pd.to_datetime(frame["ts"], errors="coerce", utc=True, format="mixed")
        frame = frame.assign(_order=order).sort_values("_order", kind="stable") \
            .drop(columns="_order")
    frame = frame.tail(max_rows).reset_index(drop=True)
    info = {"folder": shown(folder), "files": len(files), "rows": len(frame),
            "skipped_lines": skipped}
    return frame, info


def read_feedback(meta: dict[str, Any], ids: list[str], folder: Path = FEEDBACK,
                  inputs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Labelled rows (feature columns, target, and the id columns when given) from
    data/feedback/*.csv, with the features looked up by id where a file has none."""
    features, target = list(meta["feature_columns"]), meta["target"]
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    parts, unmatched = [], 0
    lookup: pd.DataFrame | None = None
    for path in files:
        frame = pd.read_csv(path, low_memory=False)
        if target not in frame.columns:
            raise BadFeedback(f"{shown(path)}: no target column {target!r}")
        frame = frame.dropna(subset=[target])
        if all(c in frame.columns for c in features):
            parts.append(frame[[c for c in [*ids, *features, target] if c in frame.columns]])
            continue
        if not ids or not all(c in frame.columns for c in ids):
            raise BadFeedback(f"{shown(path)}: needs every feature column or the id column(s) "
                              f"{ids} beside {target!r}")
        if lookup is None:
            lookup = _feature_lookup(features, ids, inputs)
        keyed = frame[[*ids, target]].astype({c: str for c in ids})
        joined = keyed.merge(lookup, on=ids, how="inner")
        unmatched += len(frame) - len(joined)
        parts.append(joined[[*ids, *features, target]])
    labelled = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*ids, *features, target])
    if ids and not labelled.empty:  # the newest label of an id wins; rows without ids all stay
        keys = row_keys(labelled, ids)
        latest = ~pd.Series(keys, index=labelled.index).duplicated(keep="last")
        labelled = labelled[latest | pd.Series([k is None for k in keys], index=labelled.index)]
    return labelled, {"folder": shown(folder), "files": len(files), "rows": len(labelled),
                      "unmatched_ids": unmatched}


def _feature_lookup(features: list[str], ids: list[str],
                    inputs: pd.DataFrame | None) -> pd.DataFrame:
    """Features by id: the newest logged input carrying the id, else the ingested dataset."""
    sources = []
    if inputs is not None and all(c in inputs.columns for c in [*ids, *features]):
        sources.append(inputs[[*ids, *features]].iloc[::-1])
    dataset = ROOT / "data" / "interim" / "dataset.csv"
    if dataset.is_file():
        frame = pd.read_csv(dataset, low_memory=False)
        if all(c in frame.columns for c in [*ids, *features]):
            sources.append(frame[[*ids, *features]])
    if not sources:
        return pd.DataFrame(columns=[*ids, *features])
    both = pd.concat(sources, ignore_index=True)
    for c in ids:
        both[c] = both[c].astype(str)
    return both.drop_duplicates(subset=ids, keep="first")


def training_set(train: pd.DataFrame, feedback: pd.DataFrame, holdout: pd.DataFrame,
                 ids: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training split with the labelled feedback merged in (see the module docstring)."""
    counts = {"train_rows": len(train), "feedback_rows": len(feedback), "held_out": 0,
              "replaced": 0}
    if feedback.empty:
        return train.reset_index(drop=True), counts
    if ids and all(c in train.columns and c in holdout.columns and c in feedback.columns
                   for c in ids):
        held = set(row_keys(holdout, ids))
        in_holdout = [k is not None and k in held for k in row_keys(feedback, ids)]
        counts["held_out"] = sum(in_holdout)
        feedback = feedback[[not x for x in in_holdout]]
        relabelled = set(row_keys(feedback, ids)) - {None}
        replaced = [k in relabelled for k in row_keys(train, ids)]
        counts["replaced"] = sum(replaced)
        train = train[[not x for x in replaced]]
        for c in ids:  # ids looked up as text: back to the training split's type when they fit
            try:
                feedback = feedback.assign(**{c: feedback[c].astype(train[c].dtype)})
            except (TypeError, ValueError):
                pass
    merged = pd.concat([train, feedback[[c for c in train.columns if c in feedback.columns]]],
                       ignore_index=True)
    counts["feedback_rows"] = len(feedback)
    return merged, counts


def row_keys(frame: pd.DataFrame, ids: list[str]) -> list[tuple[str, ...] | None]:
    """Each row's id as text (ids read from CSV and JSON differ in type); None without one."""
    cols = [frame[c].tolist() if c in frame.columns else [None] * len(frame) for c in ids]
    return [None if any(v is None or v != v for v in vals) else tuple(str(v) for v in vals)
            for vals in zip(*cols, strict=True)] if ids else [None] * len(frame)


def shown(path: Path) -> str:
    p = Path(path).resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="training split + labelled production feedback")
    ap.add_argument("--train", default=str(ROOT / "data" / "splits" / "train.csv"))
    ap.add_argument("--holdout", default=str(ROOT / "data" / "splits" / "test.csv"))
    ap.add_argument("--feedback", default=str(FEEDBACK))
    ap.add_argument("--production", default=str(PRODUCTION))
    ap.add_argument("--out", default=str(ROOT / "data" / "retrain" / "train.csv"))
    args = ap.parse_args(argv)
    meta, ids = model_meta(), id_columns()
    inputs, _ = read_inputs(Path(args.production))
    try:
        feedback, info = read_feedback(meta, ids, Path(args.feedback), inputs)
        train = pd.read_csv(args.train, low_memory=False)
        holdout = pd.read_csv(args.holdout, low_memory=False)
    except (OSError, ValueError) as e:  # BadFeedback is a ValueError
        print(f"production_data: {e}", file=sys.stderr)
        return 2
    merged, counts = training_set(train, feedback, holdout, ids)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    merged.to_csv(tmp, index=False)
    tmp.replace(out)
    print(json.dumps({"out": shown(out), "rows": len(merged), **counts,
                      "feedback": info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
