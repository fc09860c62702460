"""Profiling a table, and the inferences phase 1 makes from it and from the problem text:
the target column, the problem type, id-like columns and the primary metric."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlpipe_flow.builtin import BuiltinUserError

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORIES = 10_000  # a text column with more distinct values cannot be one-hot encoded
MAX_CLASSES = 50
MIN_ROWS = 30
ID_TOKENS = {"id", "ids", "uuid", "guid", "key", "identifier"}
VERBS = r"(?:predict|forecast|estimate|classify|detect|score|model|determine)\w*"
PHRASE_END = r"(?:\b(?:from|via|using|with|based|for|in|on|by|and|given|through|over)\b|[,.;:()]|$)"
STOPWORDS = {"the", "a", "an", "of", "whether", "which", "will", "if", "is", "are", "be", "who",
             "what", "how", "much", "many", "likely", "likelihood", "probability", "value"}
METRIC_BY_TYPE = {"binary_classification": "roc_auc", "multiclass_classification": "f1_macro",
                  "regression": "rmse"}


def tokens(text: str) -> list[str]:
    """'customerID' -> ['customer', 'id']; 'Age (day)' -> ['age', 'day']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(text))
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return re.findall(r"[a-z0-9]+", spaced.lower())


def same_word(a: str, b: str) -> bool:
    if a == b or a.rstrip("s") == b.rstrip("s"):
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 5 and long_.startswith(short)


def is_id_like(name: str, s: pd.Series) -> bool:
    import pandas as pd

    values = s.dropna()
    if len(values) == 0:
        return False
    if name.startswith("Unnamed: "):  # a blank header: a pandas index written by to_csv()
        return True
    unique_share = values.nunique() / len(values)
    if set(tokens(name)) & ID_TOKENS and unique_share >= 0.9:
        return True
    if pd.api.types.is_integer_dtype(s) and unique_share == 1.0 and len(values) > 20 \
            and int(values.max()) - int(values.min()) + 1 == len(values):
        return True  # a row counter: consecutive integers, one per row, in any order
    numeric = pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
    # free text unique on every row (names, e-mails): an identifier, not a feature
    return (not numeric and unique_share == 1.0 and len(values) > 20
            and values.nunique() <= MAX_CATEGORIES)


def infer_target(problem: str, columns: list[str], excluded: set[str]) -> str | None:
    """The column the problem text names: 'predict churn' -> 'Churn'."""
    text = problem.lower()
    m = re.search(VERBS + r"\s+(.*?)" + PHRASE_END, text)
    raw = tokens(m.group(1)) if m else []
    phrase = [w for w in raw if w not in STOPWORDS]
    # the head noun: the word before "of" ("the age of concrete" -> age), else the last word
    of = raw.index("of") if "of" in raw[1:] else -1
    head_word = raw[of - 1] if of > 0 else (phrase[-1] if phrase else None)
    rest = [w for w in tokens(text) if w not in STOPWORDS]
    best, best_score = None, 0.0
    for col in columns:
        if col in excluded:
            continue
        ctoks = tokens(col)
        if not ctoks:
            continue
        hits = sum(any(same_word(w, c) for c in ctoks) for w in phrase)
        head = 1.0 if head_word and any(same_word(head_word, c) for c in ctoks) else 0.0
        if phrase and not hits:
            continue  # "predict X ...": the target is named in X, not elsewhere in the text
        loose = sum(any(same_word(w, c) for c in ctoks) for w in rest)
        score = 2.0 * hits + head + 0.25 * loose
        if score > best_score:
            best, best_score = col, score
    return best


def resolve_target(explicit: str | None, problem: str, columns: list[str],
                   excluded: set[str]) -> str:
    listing = ", ".join(repr(c) for c in columns[:40]) + (" ..." if len(columns) > 40 else "")
    if explicit is not None:
        if explicit in columns:
            return explicit
        loose = [c for c in columns if c.strip().lower() == explicit.strip().lower()]
        if len(loose) == 1:
            return loose[0]
        raise BuiltinUserError(f"--target {explicit!r} is not a column of the data (columns: "
                               f"{listing})")
    found = infer_target(problem, columns, excluded)
    if found is None:
        raise BuiltinUserError(f"no column matches the problem {problem!r}; name the target with "
                               f"--target COLUMN (columns: {listing})")
    return found


def infer_problem_type(name: str, y: pd.Series) -> str:
    import pandas as pd

    values = y.dropna()
    if len(values) == 0:
        raise BuiltinUserError(f"target column {name!r} is entirely missing; choose another "
                               "target with --target or fix the data")
    distinct = values.nunique()
    if distinct < 2:
        raise BuiltinUserError(f"target column {name!r} has a single class "
                               f"({values.iloc[0]!r}) in {len(values)} rows; a model needs at "
                               "least two classes or a varying number")
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if distinct == 2:
        return "binary_classification"
    if numeric:
        integral = bool((values.astype(float) % 1 == 0).all())
        return "multiclass_classification" if integral and distinct <= 10 else "regression"
    if distinct > MAX_CLASSES:
        raise BuiltinUserError(f"target column {name!r} is text with {distinct} distinct values; "
                               f"too many classes (at most {MAX_CLASSES}) for classification")
    return "multiclass_classification"


def positive_class(y: pd.Series) -> Any:
    values = list(y.dropna().unique())
    preferred = ("yes", "true", "1", "positive", "churn", "churned", "fraud", "default", "y")
    for v in values:
        if str(v).strip().lower() in preferred:
            return plain(v)
    counts = y.value_counts()
    return plain(counts.index[-1])  # the minority class


def plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (for YAML and JSON)."""
    return v.item() if hasattr(v, "item") else v


def profile_frame(df: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    cols = []
    for name in df.columns:
        s = df[name]
        values = s.dropna()
        col: dict[str, Any] = {"name": str(name), "dtype": str(s.dtype),
                               "missing": int(s.isna().sum()),
                               "missing_share": round(float(s.isna().mean()), 4),
                               "distinct": int(values.nunique())}
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            col["kind"] = "numeric"
            if len(values):
                col.update(min=plain(values.min()), max=plain(values.max()),
                           mean=round(float(values.mean()), 4))
        else:
            col["kind"] = "categorical"
            top = values.astype(str).value_counts().head(5)
            col["top"] = {str(k): int(v) for k, v in top.items()}
        cols.append(col)
    return {"rows": int(len(df)), "columns": cols,
            "duplicate_rows": int(df.duplicated().sum()),
            "missing_cells": int(df.isna().to_numpy().sum()),
            "cells": int(df.size)}


def target_summary(y: pd.Series, problem_type: str) -> dict[str, Any]:
    if problem_type == "regression":
        v = y.dropna().astype(float)
        return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4),
                "min": round(float(v.min()), 4), "max": round(float(v.max()), 4)}
    counts = y.value_counts()
    total = int(counts.sum())
    return {"classes": {str(k): {"count": int(c), "share": round(c / total, 4)}
                        for k, c in counts.items()}}


GROUP_WORDS = {"gender", "sex", "age", "senior", "region", "country", "state", "race",
               "ethnicity", "segment", "partner", "dependents", "language", "city"}
MAX_GROUP_LEVELS = 12
MIN_GROUP_ROWS = 30


def group_columns(df: pd.DataFrame, features: list[str]) -> list[str]:
    """Columns to report the model per group on (the model card's fairness table): features
    that name a person's or customer's group (gender, senior, region, ...) with 2-12 levels
    of at least 30 rows each; at most two."""
    out = []
    for c in features:
        s = df[c].dropna()
        counts = s.value_counts()
        if not (2 <= len(counts) <= MAX_GROUP_LEVELS) or counts.min() < MIN_GROUP_ROWS:
            continue
        if set(tokens(c)) & GROUP_WORDS:
            out.append(c)
    return out[:2]
