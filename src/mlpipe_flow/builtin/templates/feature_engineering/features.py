"""Feature engineering: the preprocessing every model shares, and the train/valid/test splits.

The preprocessor is built only from scikit-learn and pandas parts, so the saved model
(preprocessing + estimator in one Pipeline) unpickles anywhere those are installed:
- numeric columns: text coerced to numbers, median imputation, standard scaling;
- categorical columns: most-frequent imputation, one-hot encoding; categories unseen in
  training (or rarer than 1% of rows) are folded into an "infrequent" column, never an error.

Run: `python -m feature_engineering.features` -> data/splits/{train,valid,test}.csv
(id columns, feature columns and the target of ml-spec.yaml; shares from its `splits`)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
VALID_SHARE = 0.15
TEST_SHARE = 0.15
MAX_ONE_HOT = 30


def column_types(schema: dict[str, Any], features: list[str]) -> tuple[list[str], list[str]]:
    kinds = {c["name"]: c["type"] for c in schema["columns"]}
    numeric = [f for f in features if kinds.get(f) in ("integer", "number")]
    categorical = [f for f in features if kinds.get(f) == "category"]
    return numeric, categorical


def build_preprocessor(schema: dict[str, Any], features: list[str]) -> ColumnTransformer:
    numeric, categorical = column_types(schema, features)
    to_numbers = FunctionTransformer(pd.DataFrame.apply, kw_args={"func": pd.to_numeric,
                                                                  "errors": "coerce"},
                                     feature_names_out="one-to-one")
    to_text = FunctionTransformer(pd.DataFrame.astype, kw_args={"dtype": object},
                                  feature_names_out="one-to-one")
    num = Pipeline([("coerce", to_numbers), ("impute", SimpleImputer(strategy="median")),
                    ("scale", StandardScaler())])
    cat = Pipeline([("as_text", to_text),
                    ("impute", SimpleImputer(strategy="most_frequent")),
                    ("one_hot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                              min_frequency=0.01, max_categories=MAX_ONE_HOT,
                                              sparse_output=False))])
    return ColumnTransformer([("numeric", num, numeric), ("categorical", cat, categorical)],
                             remainder="drop", verbose_feature_names_out=False)


def dedupe(df: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """Drop exact duplicate rows (features + target): a duplicate in two splits is leakage."""
    cols = [*spec["feature_columns"], spec["target"]]
    return df.drop_duplicates(subset=cols).reset_index(drop=True)


def split_shares(spec: dict[str, Any]) -> tuple[float, float]:
    """(valid share, test share) from ml-spec.yaml's `splits` (default 0.70/0.15/0.15)."""
    shares = spec.get("splits") or {}
    return float(shares.get("valid", VALID_SHARE)), float(shares.get("test", TEST_SHARE))


def make_splits(df: pd.DataFrame, spec: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Raw rows (ids + features + target, cells as cleaned) split once at random: rows with a
    missing target and exact duplicates dropped; stratified on the target for classification.
    The id columns stay so every split row traces back to its raw row."""
    cols = [*spec.get("id_columns", []), *spec["feature_columns"], spec["target"]]
    data = dedupe(df, spec)[cols]
    data = data[data[spec["target"]].notna()].reset_index(drop=True)
    y = data[spec["target"]]
    stratify = None
    if spec["problem_type"] != "regression" and y.value_counts().min() >= 3:
        # the classes as integer codes in sorted order: the same strata (and rows) as the labels
        # themselves, without sorting millions of strings twice
        stratify = pd.Series(pd.factorize(y, sort=True)[0], index=data.index)
    valid_share, test_share = split_shares(spec)
    rest, test = train_test_split(data, test_size=test_share, random_state=SEED, stratify=stratify)
    strat_rest = stratify.loc[rest.index] if stratify is not None else None
    train, valid = train_test_split(rest, test_size=valid_share / (1 - test_share),
                                    random_state=SEED, stratify=strat_rest)
    return {"train": train, "valid": valid, "test": test}


def write_splits(splits: dict[str, pd.DataFrame], root: Path = ROOT) -> dict[str, int]:
    out = root / "data/splits"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    return {name: int(len(frame)) for name, frame in splits.items()}


def main() -> None:
    import yaml

    spec = yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8"))
    df = pd.read_csv(ROOT / "data/interim/dataset.csv", low_memory=False)
    sizes = write_splits(make_splits(df, spec))
    (ROOT / "data/splits/sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    print(f"splits: {sizes}")


if __name__ == "__main__":
    main()
