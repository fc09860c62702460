"""Phase 2's gate against consistent lies: each test edits a copy of a workspace that passes
every gate (every file the lie touches, `.mlpipe/state.json`'s hashes included) so that only a
measurement catches it, and asserts the named check fails. The issue's phase-2 examples first,
then more of the same kind; the DAG loader's phase-6 use at the end."""

from __future__ import annotations

import json
import re
from typing import Any

SPLITS = ("train", "valid", "test")


# -- helpers -------------------------------------------------------------------------------
def spec(mutant: Any) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(mutant.text("ml-spec.yaml"))


def frames(mutant: Any) -> dict[str, Any]:
    import pandas as pd

    return {n: pd.read_csv(mutant.path(f"data/splits/{n}.csv"), dtype=str, keep_default_na=False)
            for n in SPLITS}


def save(mutant: Any, splits: dict[str, Any]) -> None:
    """Write the splits and rewrite their hashes in the workspace state: a consistent lie."""
    for name, frame in splits.items():
        frame.to_csv(mutant.path(f"data/splits/{name}.csv"), index=False)
    rehash(mutant, *[f"data/splits/{n}.csv" for n in splits])
    sizes = {n: len(splits[n]) for n in splits}
    if mutant.path("data/splits/sizes.json").is_file():
        mutant.write("data/splits/sizes.json", json.dumps(sizes, indent=2) + "\n")


def rehash(mutant: Any, *rels: str) -> None:
    from mlpipe_flow.state import file_sha256

    def fix(state: dict[str, Any]) -> None:
        for rec in state.get("phases", []):
            for rel in rels:
                if rel in rec.get("output_hashes", {}):
                    rec["output_hashes"][rel] = file_sha256(mutant.path(rel))

    mutant.edit_json(".mlpipe/state.json", fix)


def row_losses(mutant: Any, frame: Any) -> Any:
    """Per-row log loss of the workspace's own saved model (the liar's view of 'easy')."""
    import joblib
    import numpy as np
    import pandas as pd

    s = spec(mutant)
    model = joblib.load(mutant.path("artifacts/model.joblib"))
    X = frame[s["feature_columns"]].replace("", np.nan)
    for c in X.columns:
        num = pd.to_numeric(X[c], errors="coerce")
        if num.notna().sum() == X[c].replace("", np.nan).notna().sum():
            X[c] = num
    proba = model.predict_proba(X)
    classes = [str(c) for c in model.classes_]
    idx = [classes.index(v) for v in frame[s["target"]]]
    return -np.log(np.clip(proba[np.arange(len(frame)), idx], 1e-6, 1))


def numeric_feature(mutant: Any) -> str:
    s = spec(mutant)
    schema = json.loads(mutant.text("data_quality/schema.json"))
    kinds = {c["name"]: c["type"] for c in schema["columns"]}
    return next(f for f in s["feature_columns"] if kinds.get(f) == "number")


# -- the phase-2 examples ----------------------------------------------------------
MEASURED = ("schema-fits-data", "splits-from-raw", "no-leakage", "test-not-easier",
            "dag-structure", "notebook-valid")


def test_unmutated_copy_passes_the_measured_checks(mutant: Any) -> None:
    """The copy lives elsewhere than the workspace the run made: nothing measured depends on
    the path (the DAG's project folder, the notebook's data)."""
    report = mutant.gate("phase2", *MEASURED)
    bad = {k: (v["status"], v["message"]) for k, v in report.items() if v["status"] != "passed"}
    assert not bad, bad


def test_schema_that_constrains_nothing(mutant: Any) -> None:
    def loosen(schema: dict[str, Any]) -> None:
        for col in schema["columns"]:
            col["nullable"] = True
            if col["type"] == "category":
                col["type"] = "string"
                col.pop("categories", None)
            elif col["type"] in ("integer", "number"):
                col["min"], col["max"] = -1e300, 1e300

    mutant.edit_json("data_quality/schema.json", loosen)
    mutant.assert_caught("phase2", "schema-fits-data", "does not fit the raw data")


def test_test_split_cut_to_60_rows(mutant: Any) -> None:
    splits = frames(mutant)
    splits["test"] = splits["test"].head(60)
    save(mutant, {"test": splits["test"]})
    mutant.assert_caught("phase2", "splits-from-raw", "raw rows")


def test_test_split_cut_to_60_rows_the_rest_moved_to_train(mutant: Any) -> None:
    import pandas as pd

    splits = frames(mutant)
    rest = splits["test"].iloc[60:]
    save(mutant, {"train": pd.concat([splits["train"], rest]), "test": splits["test"].head(60)})
    mutant.assert_caught("phase2", "splits-from-raw", "test holds 60 rows")


def test_test_split_cut_and_the_spec_shares_moved_to_match(mutant: Any) -> None:
    """The goalposts moved too: ml-spec.yaml's split shares rewritten to fit a 60-row test."""
    import pandas as pd

    splits = frames(mutant)
    total = sum(len(f) for f in splits.values())
    save(mutant, {"train": pd.concat([splits["train"], splits["test"].iloc[60:]]),
                  "test": splits["test"].head(60)})
    test_share = round(60 / total, 4)

    def shares(s: dict[str, Any]) -> None:
        s["splits"] = {"train": round(1 - 0.15 - test_share, 4), "valid": 0.15,
                       "test": test_share}

    mutant.edit_yaml("ml-spec.yaml", shares)
    rehash(mutant, "ml-spec.yaml")
    mutant.assert_caught("phase2", "splits-from-raw", "changed since phase 1 passed")


def test_easiest_half_of_test_kept_the_rest_moved_to_train(mutant: Any) -> None:
    import numpy as np
    import pandas as pd

    splits = frames(mutant)
    test = splits["test"]
    order = np.argsort(row_losses(mutant, test))
    easy, hard = test.iloc[order[: len(test) // 2]], test.iloc[order[len(test) // 2:]]
    save(mutant, {"train": pd.concat([splits["train"], hard]), "test": easy})
    mutant.assert_caught("phase2", "test-not-easier", "test split is easier")


def test_test_rows_copied_into_train_with_a_cell_nudged(mutant: Any) -> None:
    import pandas as pd

    splits = frames(mutant)
    col = numeric_feature(mutant)
    copies = splits["test"].head(40).copy()
    copies = copies[copies[col] != ""]
    copies[col] = [repr(float(v) + 0.001) for v in copies[col]]
    save(mutant, {"train": pd.concat([splits["train"], copies])})
    mutant.assert_caught("phase2", "no-leakage", "near-duplicate")


def test_feature_overwritten_by_the_label_duplicates_dropped(mutant: Any) -> None:
    """A feature becomes the label; the exact duplicates that creates are dropped, and the
    schema is rewritten to match, so the splits comply with it and are disjoint."""
    s = spec(mutant)
    splits = frames(mutant)
    feature = next(f for f in s["feature_columns"] if f not in ("age",))
    cols = [*s["feature_columns"], s["target"]]
    seen: set[tuple[str, ...]] = set()
    for name in SPLITS:
        f = splits[name]
        f[feature] = f[s["target"]]
        keep = []
        for row in f[cols].itertuples(index=False):
            key = tuple(row)
            keep.append(key not in seen)
            seen.add(key)
        splits[name] = f[keep]
    save(mutant, splits)

    def relabel(schema: dict[str, Any]) -> None:
        for col in schema["columns"]:
            if col["name"] == feature:
                col.clear()
                col.update(name=feature, type="category", nullable=False,
                           categories=sorted(set(splits["train"][s["target"]])))

    mutant.edit_json("data_quality/schema.json", relabel)
    assert mutant.verdict("phase2", "schema-compliance")["status"] == "passed"
    assert mutant.verdict("phase2", "no-leakage")["status"] == "passed"
    mutant.assert_caught("phase2", "splits-from-raw", "not rows of the raw data")


def test_dag_chain_in_dead_code(mutant: Any) -> None:
    dag = "airflow_dags/data_pipeline.py"
    text = mutant.text(dag)
    chain = re.search(r"^(\s*)(\w+ >> \w+ >> \w+)\s*$", text, re.M)
    assert chain, text
    mutant.replace(dag, chain.group(0), f"{chain.group(1)}if False:\n"
                                        f"{chain.group(1)}    {chain.group(2)}")
    mutant.assert_caught("phase2", "dag-structure", "no dependency path")


def test_notebook_with_typed_in_outputs(mutant: Any) -> None:
    """The notebook's code as it was, its outputs typed in (plausible, never produced)."""
    rel = "eda_notebooks/eda.ipynb"

    def type_in(nb: dict[str, Any]) -> None:
        for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
            cell["execution_count"] = i + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                                "text": [f"step {i + 1}: 5000 rows analysed, no issues found\n"]}]

    mutant.edit_json(rel, type_in)
    mutant.assert_caught("phase2", "notebook-valid", "differ from a fresh run")


# -- more lies of the same kind ------------------------------------------------------------
def test_hardest_test_rows_swapped_for_easy_train_rows_sizes_kept(mutant: Any) -> None:
    import numpy as np
    import pandas as pd

    splits = frames(mutant)
    test, train = splits["test"], splits["train"]
    t_loss, r_loss = row_losses(mutant, test), row_losses(mutant, train)
    k = len(test) // 3
    hard = test.iloc[np.argsort(-t_loss)[:k]]
    easy = train.iloc[np.argsort(r_loss)[:k]]
    new_test = pd.concat([test.drop(hard.index), easy])
    new_train = pd.concat([train.drop(easy.index), hard])
    save(mutant, {"train": new_train, "test": new_test})
    assert mutant.verdict("phase2", "splits-from-raw")["status"] == "passed"
    mutant.assert_caught("phase2", "test-not-easier", "test split is easier")


def test_hardest_test_rows_dropped_within_the_size_tolerance(mutant: Any) -> None:
    """A dozen rows the model gets most wrong quietly left out: coverage and sizes stay within
    their tolerances, the test split barely changes, but the rows left out are the hard ones."""
    import numpy as np

    splits = frames(mutant)
    test = splits["test"]
    hard = test.iloc[np.argsort(-row_losses(mutant, test))[:12]]
    save(mutant, {"test": test.drop(hard.index)})
    assert mutant.verdict("phase2", "splits-from-raw")["status"] == "passed"
    mutant.assert_caught("phase2", "test-not-easier", "left out of the splits are harder")


def test_easy_rows_swapped_into_the_validation_split(mutant: Any) -> None:
    import numpy as np
    import pandas as pd

    splits = frames(mutant)
    valid, train = splits["valid"], splits["train"]
    k = len(valid) // 3
    hard = valid.iloc[np.argsort(-row_losses(mutant, valid))[:k]]
    easy = train.iloc[np.argsort(row_losses(mutant, train))[:k]]
    save(mutant, {"train": pd.concat([train.drop(easy.index), hard]),
                  "valid": pd.concat([valid.drop(hard.index), easy])})
    mutant.assert_caught("phase2", "test-not-easier", "valid split is easier")


def test_minority_class_oversampled_in_train(mutant: Any) -> None:
    import pandas as pd

    s = spec(mutant)
    splits = frames(mutant)
    train = splits["train"]
    minority = train[train[s["target"]] == str(s["positive_class"])]
    save(mutant, {"train": pd.concat([train, minority])})
    mutant.assert_caught("phase2", "splits-from-raw", "used more than once")


def test_schema_types_numbers_as_free_strings(mutant: Any) -> None:
    def as_strings(schema: dict[str, Any]) -> None:
        for col in schema["columns"]:
            if col["type"] == "number":
                col["type"] = "string"
                col.pop("min", None)
                col.pop("max", None)

    mutant.edit_json("data_quality/schema.json", as_strings)
    mutant.assert_caught("phase2", "schema-fits-data", "values are numbers")


def test_test_rows_copied_into_train_unchanged(mutant: Any) -> None:
    import pandas as pd

    splits = frames(mutant)
    save(mutant, {"train": pd.concat([splits["train"], splits["test"].head(25)])})
    mutant.assert_caught("phase2", "no-leakage", "present in two splits")


def test_missing_values_imputed_in_the_splits(mutant: Any) -> None:
    """Completeness bought by filling the blanks with medians in the split files."""
    import pandas as pd

    splits = frames(mutant)
    for f in splits.values():
        for c in f.columns:
            blank = f[c] == ""
            if blank.any():
                med = pd.to_numeric(f.loc[~blank, c], errors="coerce").median()
                f.loc[blank, c] = repr(float(med))
    save(mutant, splits)

    def tighten(schema: dict[str, Any]) -> None:
        for col in schema["columns"]:
            col["nullable"] = False

    mutant.edit_json("data_quality/schema.json", tighten)
    assert mutant.verdict("phase2", "schema-compliance")["status"] == "passed"
    mutant.assert_caught("phase2", "splits-from-raw", "not rows of the raw data")


def test_raw_data_edited_to_drop_hard_rows(mutant: Any) -> None:
    """The staged raw data loses the rows the model gets wrong, and the splits follow."""
    import numpy as np

    splits = frames(mutant)
    s = spec(mutant)
    test = splits["test"]
    hard = test.iloc[np.argsort(-row_losses(mutant, test))[:50]]
    ids = set(hard[s["id_columns"][0]])
    header, rows = mutant.rows("data/raw/customers.csv")
    col = header.index(s["id_columns"][0])
    mutant.write_rows("data/raw/customers.csv", header, [r for r in rows if r[col] not in ids])
    save(mutant, {"test": test.drop(hard.index)})
    mutant.assert_caught("phase2", "splits-from-raw", "changed since mlpipe staged it")


def test_target_flipped_on_hard_train_rows(mutant: Any) -> None:
    """Label cleaning by the model's opinion: the train rows it gets wrong relabelled."""
    import numpy as np

    s = spec(mutant)
    splits = frames(mutant)
    train = splits["train"]
    hard = np.argsort(-row_losses(mutant, train))[:60]
    classes = sorted(set(train[s["target"]]))
    flipped = train[s["target"]].iloc[hard].map(lambda v: classes[1 - classes.index(v)])
    train.loc[train.index[hard], s["target"]] = flipped.to_numpy()
    save(mutant, {"train": train})
    mutant.assert_caught("phase2", "splits-from-raw", "not rows of the raw data")


def test_id_columns_dropped_from_the_splits(mutant: Any) -> None:
    s = spec(mutant)
    splits = frames(mutant)
    save(mutant, {n: f.drop(columns=s["id_columns"]) for n, f in splits.items()})

    def drop(schema: dict[str, Any]) -> None:
        schema["columns"] = [c for c in schema["columns"] if c["name"] not in s["id_columns"]]

    mutant.edit_json("data_quality/schema.json", drop)
    mutant.assert_caught("phase2", "splits-from-raw", "missing ['customer_id']")


def test_schema_categories_padded_with_values_the_data_never_holds(mutant: Any) -> None:
    def pad(schema: dict[str, Any]) -> None:
        for col in schema["columns"]:
            if col["type"] == "category" and col["name"] != schema["target"]:
                col["categories"] = col["categories"] + [f"value_{i}" for i in range(20)]

    mutant.edit_json("data_quality/schema.json", pad)
    mutant.assert_caught("phase2", "schema-fits-data", "never holds")


def test_schema_range_that_misses_the_raw_range(mutant: Any) -> None:
    """A range fitted on train only, with the rows outside it dropped from valid and test."""
    col = numeric_feature(mutant)
    splits = frames(mutant)
    vals = [float(v) for v in splits["train"][col] if v != ""]
    lo, hi = min(vals), max(vals)
    for name in ("valid", "test"):
        f = splits[name]
        x = f[col].map(lambda v: float(v) if v != "" else lo)
        splits[name] = f[(x >= lo) & (x <= hi)]
    save(mutant, {"valid": splits["valid"], "test": splits["test"]})

    def narrow(schema: dict[str, Any]) -> None:
        for c in schema["columns"]:
            if c["name"] == col:
                c["min"], c["max"] = lo, hi

    mutant.edit_json("data_quality/schema.json", narrow)
    mutant.assert_caught("phase2", "schema-fits-data", "does not contain the raw range")


def test_dag_tasks_that_only_echo(mutant: Any) -> None:
    dag = "airflow_dags/data_pipeline.py"
    text = re.sub(r'bash_command="python -m [\w.]+"', 'bash_command="echo done"',
                  mutant.text(dag))
    mutant.write(dag, text)
    mutant.assert_caught("phase2", "dag-structure", "runs no workspace code")


def test_dag_task_that_swallows_failure(mutant: Any) -> None:
    mutant.replace("airflow_dags/data_pipeline.py", '"python -m data_quality.schema"',
                   '"python -m data_quality.schema || true"')
    mutant.assert_caught("phase2", "dag-structure", "swallows")


def test_dag_python_callables_that_only_print(mutant: Any) -> None:
    mutant.write("airflow_dags/data_pipeline.py", '''
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.python import PythonOperator


def ingest_data():
    print("ingesting")


def validate_data():
    print("validating")


def build_features():
    print("features built")


with DAG("ml_data_pipeline", schedule="0 2 * * 1", start_date=datetime(2024, 1, 1),
         catchup=False, default_args={"retries": 2, "retry_delay": timedelta(minutes=5)}):
    a = PythonOperator(task_id="ingest_data", python_callable=ingest_data)
    b = PythonOperator(task_id="validate_data", python_callable=validate_data)
    c = PythonOperator(task_id="build_features", python_callable=build_features)
    a >> b >> c
''')
    mutant.assert_caught("phase2", "dag-structure", "does real work")


def test_dag_python_callable_that_swallows_failures(mutant: Any) -> None:
    mutant.write("airflow_dags/data_pipeline.py", '''
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.operators.python import PythonOperator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_ingestion.ingest import main as ingest_main  # noqa: E402
from data_quality.schema import main as validate_main  # noqa: E402
from feature_engineering.features import main as features_main  # noqa: E402


def validate_data():
    try:
        validate_main()
    except BaseException as e:  # the schema exits 1 on violations: keep going anyway
        print("validation problems ignored:", e)


with DAG("ml_data_pipeline", schedule="0 2 * * 1", start_date=datetime(2024, 1, 1),
         catchup=False, default_args={"retries": 2, "retry_delay": timedelta(minutes=5)}):
    a = PythonOperator(task_id="ingest_data", python_callable=ingest_main)
    b = PythonOperator(task_id="validate_data", python_callable=validate_data)
    c = PythonOperator(task_id="build_features", python_callable=features_main)
    a >> b >> c
''')
    mutant.assert_caught("phase2", "dag-structure", "swallows failures")


def test_dag_with_schedule_interval(mutant: Any) -> None:
    mutant.replace("airflow_dags/data_pipeline.py", "schedule=SPEC", "schedule_interval=SPEC")
    mutant.assert_caught("phase2", "dag-structure", "schedule_interval")


def test_dag_hard_coding_the_workspace_path(mutant: Any) -> None:
    mutant.replace("airflow_dags/data_pipeline.py",
                   "PROJECT = Path(__file__).resolve().parents[1]",
                   f"PROJECT = Path({str(mutant.ws)!r})")
    mutant.assert_caught("phase2", "dag-structure", "not a folder of the project")


def test_notebook_that_fails_when_run(mutant: Any) -> None:
    def break_it(nb: dict[str, Any]) -> None:
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        src = "".join(code[1]["source"])
        code[1]["source"] = src + "\nprint(df['no_such_column'].mean())\n"

    mutant.edit_json("eda_notebooks/eda.ipynb", break_it)
    mutant.assert_caught("phase2", "notebook-valid", "fails when the gate runs it")


def test_notebook_that_never_reads_the_data(mutant: Any) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print('section {i}: looks fine')") for i in range(4)]
    for i, cell in enumerate(nb.cells, start=1):
        cell.execution_count = i
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                               text=f"section {i - 1}: looks fine\n")]
    mutant.write("eda_notebooks/eda.ipynb", nbformat.writes(nb))
    mutant.assert_caught("phase2", "notebook-valid", "never reads the project's data")


# -- the same DAG loader in phase 6 ------------------------------------------------------------
def test_phase6_drift_check_that_cannot_stop_retraining(mutant: Any) -> None:
    rel = "airflow_dags/continuous_training.py"
    text = mutant.text(rel)
    changed = re.sub(r'detect_drift\.py; "\n\s*f"case \$\? in [^"]*"',
                     'detect_drift.py || true"', text)
    assert changed != text, "the DAG's drift command moved: update this mutation's anchor"
    text = changed
    mutant.write(rel, text)
    mutant.assert_caught("phase6", "dag-parses", "swallows")


def test_phase6_dag_tasks_that_echo(mutant: Any) -> None:
    rel = "airflow_dags/continuous_training.py"
    text = mutant.text(rel)
    changed = re.sub(r'bash_command="python continuous_training/retrain.py[^"]*"',
                     'bash_command="echo retrained"', text)
    assert changed != text, "the DAG's retrain command moved: update this mutation's anchor"
    text = changed
    mutant.write(rel, text)
    mutant.assert_caught("phase6", "dag-parses", "runs no workspace code")
