"""A corpus of tables nobody tuned mlpipe for, built by code: scikit-learn's bundled sets and
generators with the mess real data has. `bench/corpus.py` runs the whole offline workflow on
each; tests/test_corpus.py runs each through the checks before a run and a subset through the
first phases.

Each case writes its table into a folder and says how `mlpipe run` is called on it: the data
argument (a file or a database URL), the problem text and target, and what must happen: the run
reaches 100% (`"pass"`), or is refused before anything runs with one line naming the reason
(`"refused"`, with a phrase that line must hold). A table in a database server this machine
cannot start (`"unavailable"`, the reason in `refusal`) is skipped and said so.
"""

from __future__ import annotations

import atexit
import contextlib
import sqlite3
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets


@dataclass(frozen=True)
class Case:
    data: str
    problem: str
    target: str | None = None
    expect: str = "pass"  # or "refused", or "unavailable" (a server this machine lacks)
    refusal: str = ""  # a phrase the one-line refusal holds


Builder = Callable[[Path], Case]


def _sk_frame(loader: Callable[..., object], target: str) -> pd.DataFrame:
    frame = loader(as_frame=True).frame  # type: ignore[attr-defined]
    return frame.rename(columns={"target": target})


def breast_cancer(folder: Path) -> Case:
    """Small and wide: 569 rows, 30 numeric features, binary (the table that stalled phase 5)."""
    df = _sk_frame(datasets.load_breast_cancer, "malignant")
    df["malignant"] = np.where(df["malignant"] == 0, "yes", "no")
    path = folder / "breast_cancer.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict whether a tumour is malignant", "malignant")


def digits(folder: Path) -> Case:
    """Many classes: 1,797 rows, 64 pixel features, 10 digits."""
    df = _sk_frame(datasets.load_digits, "digit")
    path = folder / "digits.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict the handwritten digit", "digit")


def wine(folder: Path) -> Case:
    """Tiny multiclass: 178 rows, 13 features, 3 cultivars."""
    df = _sk_frame(datasets.load_wine, "cultivar")
    path = folder / "wine.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict the wine cultivar", "cultivar")


def diabetes(folder: Path) -> Case:
    """Small regression: 442 rows, 10 features as scikit-learn ships them (mean-centred and
    scaled, so `sex` is coded -0.0446 / 0.0507). At 75 rows a fold, the RMSE's spread over
    folds is near phase 3's cv-stability bound by sampling noise alone (std / target std
    0.058 in one run, under 0.05 in another)."""
    frame = datasets.load_diabetes(as_frame=True).frame
    df = frame.rename(columns={"target": "progression"})
    path = folder / "diabetes.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict disease progression one year after baseline", "progression")


def _customers(n: int, seed: int, positive_rate: float = 0.25) -> pd.DataFrame:
    """Customer rows with a signal: spend, tenure, plan, region; the target is `churned`."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    spend = np.round(rng.gamma(2.0, 35.0, n), 2)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    logit = -0.04 * tenure + 0.012 * spend + np.where(plan == "basic", 0.8, -0.3)
    logit += rng.normal(0, 0.6, n)
    cut = np.quantile(logit, 1 - positive_rate)
    churned = np.where(logit > cut, "yes", "no")
    return pd.DataFrame({"tenure_months": tenure, "monthly_spend": spend, "plan": plan,
                         "region": region, "churned": churned})


def rare_positive(folder: Path) -> Case:
    """A rare positive class: 3% of 6,000 rows."""
    df = _customers(6000, 1, positive_rate=0.03)
    path = folder / "rare.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def timestamps(folder: Path) -> Case:
    """A timestamp column (ISO 8601 sign-up time) beside the features."""
    df = _customers(3000, 2)
    start = pd.Timestamp("2022-01-01")
    offsets = np.random.default_rng(2).integers(0, 3 * 365 * 24 * 3600, len(df))
    df.insert(0, "signed_up_at", (start + pd.to_timedelta(offsets, unit="s")).astype(str))
    path = folder / "timestamps.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


WORDS = ["slow", "billing", "great", "support", "cancel", "price", "app", "crash", "love",
         "refund", "fast", "confusing", "helpful", "expensive", "outage", "easy"]


def free_text(folder: Path) -> Case:
    """A free-text column (a support note per customer) that carries part of the signal."""
    df = _customers(3000, 3)
    rng = np.random.default_rng(3)
    notes = []
    for churn in df["churned"]:
        words = list(rng.choice(WORDS, rng.integers(3, 12)))
        if churn == "yes" and rng.random() < 0.6:
            words.append(str(rng.choice(["cancel", "refund", "outage", "expensive"])))
        notes.append(" ".join(words).capitalize() + ".")
    df.insert(2, "support_note", notes)
    path = folder / "free_text.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def id_columns(folder: Path) -> Case:
    """High-cardinality and id-like columns: a string id, a monotonic integer id, and a
    high-cardinality category (postcode) with a little signal."""
    df = _customers(4000, 4)
    rng = np.random.default_rng(4)
    letters = np.array(list(string.ascii_uppercase))
    df.insert(0, "account_ref", ["".join(rng.choice(letters, 3)) + f"-{i:06d}"
                                 for i in range(len(df))])
    df.insert(1, "row_id", np.arange(100_000, 100_000 + len(df)))
    df.insert(2, "postcode", [f"P{v:04d}" for v in rng.integers(0, 1500, len(df))])
    path = folder / "ids.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def pandas_index(folder: Path) -> Case:
    """A CSV written with its pandas index: a first column with no name, 0..n-1 (kept as an
    identifier, never a feature)."""
    df = _customers(2000, 5)
    path = folder / "indexed.csv"
    df.to_csv(path)  # index=True: the blank header cell
    return Case(str(path), "predict which customers churn", "churned")


def duplicate_names(folder: Path) -> Case:
    df = _customers(2000, 6)
    path = folder / "duplicates.csv"
    frame = df.copy()
    frame.columns = ["tenure_months", "monthly_spend", "plan", "plan", "churned"]
    frame.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned", expect="refused",
                refusal="duplicate column names")


def heavy_missing(folder: Path) -> Case:
    """Heavy missingness: 40% of every feature cell blank, at random. Phase 2's completeness
    check needs more than 95% of the splits' cells, which keep the raw cells: refused up front."""
    df = _customers(4000, 7)
    rng = np.random.default_rng(7)
    for col in ["tenure_months", "monthly_spend", "plan", "region"]:
        df[col] = df[col].astype(object).where(rng.random(len(df)) > 0.4, None)
    path = folder / "missing.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned", expect="refused",
                refusal="of its cells hold a value")


def some_missing(folder: Path) -> Case:
    """Missing values the completeness gate allows: 8% of two features' cells blank."""
    df = _customers(4000, 13)
    rng = np.random.default_rng(13)
    for col in ["monthly_spend", "region"]:
        df[col] = df[col].astype(object).where(rng.random(len(df)) > 0.08, None)
    path = folder / "some_missing.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def string_booleans(folder: Path) -> Case:
    """Booleans written as text: True/False, yes/no and Y/N columns, target included."""
    df = _customers(3000, 8)
    rng = np.random.default_rng(8)
    df["paperless"] = rng.choice(["True", "False"], len(df))
    df["has_partner"] = rng.choice(["Y", "N"], len(df))
    df["churned"] = np.where(df["churned"] == "yes", "True", "False")
    path = folder / "booleans.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def semicolon_decimal_comma(folder: Path) -> Case:
    """A European export: semicolon-separated, decimal commas."""
    df = _customers(2000, 9)
    path = folder / "semicolon.csv"
    df.to_csv(path, index=False, sep=";", decimal=",")
    return Case(str(path), "predict which customers churn", "churned", expect="refused",
                refusal="semicolon-separated")


def parquet(folder: Path) -> Case:
    df = _customers(3000, 10)
    path = folder / "customers.parquet"
    df.to_parquet(path, index=False)
    return Case(str(path), "predict which customers churn", "churned")


def sqlite_table(folder: Path) -> Case:
    df = _customers(3000, 11)
    path = folder / "crm.db"
    with sqlite3.connect(path) as con:
        df.to_sql("customers", con, index=False)
    con.close()
    return Case(f"sqlite:///{path}?table=customers", "predict which customers churn", "churned")


_SERVERS = contextlib.ExitStack()  # database servers a case started: stopped at exit
atexit.register(_SERVERS.close)
#: cases that start a server when built (the refusal test does not build them)
SERVERS = {"postgres_table"}


def postgres_table(folder: Path) -> Case:
    """The example churn data as a typed PostgreSQL table (numeric money, integer and text
    columns, NULLs) on a server started for the run (tests/pg_server.py), read through a
    password-protected URL."""
    import pg_server

    problem = "predict which customers churn"
    why = pg_server.unavailable()
    if why:
        return Case("", problem, "churned", expect="unavailable", refusal=why)
    server = _SERVERS.enter_context(pg_server.running())
    return Case(server.url(), problem, "churned")


def skewed_regression(folder: Path) -> Case:
    """A skewed regression target: flat prices, multiplicative in area, district and age with
    log-normal noise (a long right tail), categorical and numeric features, and a group column
    with decimal levels."""
    rng = np.random.default_rng(12)
    n = 3000
    rooms = rng.integers(1, 8, n)
    area = np.round(rng.normal(40 + 22 * rooms, 15).clip(15), 1)
    district = rng.choice(["centre", "inner", "outer", "rural"], n, p=[0.15, 0.35, 0.35, 0.15])
    age = rng.integers(0, 120, n)
    base = {"centre": 6200, "inner": 4300, "outer": 3100, "rural": 1800}
    price = area * np.vectorize(base.get)(district) * (1 - age / 400) * rng.lognormal(0, 0.3, n)
    # the seller's sex as a standardised export codes it (as scikit-learn's diabetes set
    # does): a group column whose levels are decimals, which the model card's table names
    sex = rng.choice([-0.044642, 0.050680], n)
    df = pd.DataFrame({"rooms": rooms, "area_m2": area, "district": district,
                       "building_age": age, "seller_sex": sex, "price": np.round(price, -2)})
    path = folder / "houses.csv"
    df.to_csv(path, index=False)
    return Case(str(path), "predict the sale price of a flat", "price")


CORPUS: dict[str, Builder] = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "wine": wine,
    "diabetes": diabetes,
    "rare_positive": rare_positive,
    "timestamps": timestamps,
    "free_text": free_text,
    "id_columns": id_columns,
    "pandas_index": pandas_index,
    "duplicate_names": duplicate_names,
    "heavy_missing": heavy_missing,
    "some_missing": some_missing,
    "string_booleans": string_booleans,
    "semicolon_decimal_comma": semicolon_decimal_comma,
    "parquet": parquet,
    "sqlite_table": sqlite_table,
    "postgres_table": postgres_table,
    "skewed_regression": skewed_regression,
}
