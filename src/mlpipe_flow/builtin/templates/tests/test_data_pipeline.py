"""Tests of the data pipeline: ingestion, schema, splits and preprocessing, on the real data.
The split files must be exactly what the pipeline's own split of the ingested data gives: a
row lost, added or copied between splits fails them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from data_ingestion.ingest import clean, frame_sha256, load_raw, numeric_text_columns
from data_quality.schema import load_schema, validate
from feature_engineering.features import build_preprocessor, make_splits, write_splits

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return {n: pd.read_csv(ROOT / f"data/splits/{n}.csv", low_memory=False) for n in SPLITS}


def test_raw_data_loads_and_matches_its_snapshot(spec: dict) -> None:
    raw = load_raw(spec, ROOT)
    snap = json.loads((ROOT / "data/raw/snapshot.json").read_text())
    assert len(raw) == snap["rows"]
    assert frame_sha256(raw) == snap["sha256"]


def test_cleaning_turns_blank_text_into_missing_and_numeric_text_into_numbers() -> None:
    df = pd.DataFrame({"charges": ["1.5", " ", "3"], "plan": ["a ", "", "b"]})
    out = clean(df)
    assert numeric_text_columns(df) == ["charges"]
    assert out["charges"].isna().sum() == 1 and out["charges"].dtype.kind == "f"
    assert out["plan"].tolist()[0] == "a" and pd.isna(out["plan"].tolist()[1])


def test_splits_comply_with_the_schema(splits: dict[str, pd.DataFrame]) -> None:
    schema = load_schema(ROOT)
    for name, frame in splits.items():
        report = validate(frame, schema)
        assert report["valid"], (name, report["problems"])


def test_schema_catches_a_violation(splits: dict[str, pd.DataFrame], spec: dict) -> None:
    schema = load_schema(ROOT)
    bad = splits["test"].head(5).drop(columns=[spec["feature_columns"][0]])
    assert not validate(bad, schema)["valid"]


def test_schema_catches_values_it_never_allowed(splits: dict[str, pd.DataFrame]) -> None:
    schema = load_schema(ROOT)
    bad = splits["test"].head(5).copy()
    broken = []
    for col in schema["columns"]:
        if col["type"] in ("integer", "number") and col.get("max") is not None:
            bad[col["name"]] = col["max"] + 1 + abs(col["max"])
            broken.append(col["name"])
        elif col["type"] == "category":
            bad[col["name"]] = "a value the schema never saw"
            broken.append(col["name"])
    if not broken:
        pytest.skip("the schema bounds no column (free text only)")
    report = validate(bad, schema)
    assert not report["valid"]
    named = {name for name in broken if any(p.startswith(f"{name}:") for p in report["problems"])}
    assert named == set(broken), report["problems"]


def test_no_row_is_in_two_splits(splits: dict[str, pd.DataFrame]) -> None:
    seen: dict[int, str] = {}
    for name, frame in splits.items():
        for h in pd.util.hash_pandas_object(frame, index=False):
            assert seen.setdefault(int(h), name) == name


def test_split_files_are_the_pipelines_split_of_the_ingested_data(tmp_path: Path,
                                                                  spec: dict) -> None:
    data = pd.read_csv(ROOT / "data/interim/dataset.csv", low_memory=False)
    write_splits(make_splits(data, spec), tmp_path)
    for name in SPLITS:
        mine = (ROOT / f"data/splits/{name}.csv").read_text(encoding="utf-8")
        assert mine == (tmp_path / f"data/splits/{name}.csv").read_text(encoding="utf-8"), name


def test_splits_partition_the_ingested_rows(splits: dict[str, pd.DataFrame], spec: dict) -> None:
    data = pd.read_csv(ROOT / "data/interim/dataset.csv", low_memory=False)
    expected = sum(len(part) for part in make_splits(data, spec).values())
    assert sum(len(frame) for frame in splits.values()) == expected
    shares = spec.get("splits") or {}
    for name, frame in splits.items():
        if name in shares:  # each split's share of the rows, within a row of rounding
            assert abs(len(frame) - shares[name] * expected) <= 0.01 * expected + 1, name


def test_splits_hold_features_and_target(splits: dict[str, pd.DataFrame], spec: dict) -> None:
    for frame in splits.values():
        assert list(frame.columns) == [*spec.get("id_columns", []), *spec["feature_columns"],
                                       spec["target"]]
        assert frame[spec["target"]].notna().all()


def test_preprocessor_handles_missing_values_and_unseen_categories(
        splits: dict[str, pd.DataFrame], spec: dict) -> None:
    features = spec["feature_columns"]
    pre = build_preprocessor(load_schema(ROOT), features).fit(splits["train"][features])
    odd = splits["test"][features].head(3).copy().astype(object)
    odd.iloc[0] = None
    for col in odd.columns:
        if odd[col].dtype == object and isinstance(odd[col].iloc[1], str):
            odd.loc[odd.index[1], col] = "never-seen-before"
    out = pre.transform(odd)
    assert out.shape[0] == 3
    assert not pd.isna(out).any()
