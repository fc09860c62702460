"""The corpus (tests/corpus.py) in the suite: every table the corpus expects refused is refused
before anything runs (one line, exit 2, no workspace), and the tables that broke the built-in
agent before (a pandas index column, booleans written as text, a group column with decimal
levels) pass phases 1-3. The whole
workflow over every table is `bench/corpus.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builtin_helpers import home_of, results
from conftest import mlpipe
from corpus import CORPUS, SERVERS

REFUSED = ["duplicate_names", "semicolon_decimal_comma", "heavy_missing"]


def test_the_corpus_says_which_tables_are_refused(tmp_path: Path) -> None:
    expected = {n for n, build in CORPUS.items()
                if n not in SERVERS and build(tmp_path).expect == "refused"}
    assert expected == set(REFUSED) and len(CORPUS) >= 14


@pytest.mark.parametrize("name", REFUSED)
def test_refused_before_anything_runs(name: str, tmp_path: Path) -> None:
    case = CORPUS[name](tmp_path)
    ws = tmp_path / "ws"
    res = mlpipe("run", case.problem, "--data", case.data, "--target", str(case.target),
                 "-w", str(ws), "--runner", "builtin", env=home_of(ws), timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr[-2000:])
    assert case.refusal in lines[0] and "Traceback" not in res.stdout + res.stderr
    assert not ws.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pandas_index", "string_booleans", "skewed_regression"])
def test_phases_1_to_3_pass(name: str, tmp_path: Path) -> None:
    case = CORPUS[name](tmp_path)
    ws = tmp_path / "ws"
    for i, phase in enumerate(("phase1", "phase2", "phase3")):
        args = ["run", case.problem, "-w", str(ws), "--runner", "builtin", "--phase", phase]
        if i == 0:
            args += ["--data", case.data, "--target", str(case.target)]
        res = mlpipe(*args, env=home_of(ws), timeout=600)
        assert res.returncode == 0, (phase, res.stdout[-3000:])
    spec = yaml.safe_load((ws / "ml-spec.yaml").read_text())
    if name == "pandas_index":  # the blank-named index column is an identifier, not a feature
        assert spec["id_columns"] == ["Unnamed: 0"]
        assert "Unnamed: 0" not in spec["feature_columns"]
    if name == "skewed_regression":  # the card's per-group table names decimal levels
        assert "seller_sex" in spec["group_columns"]
        assert "| -0.044642 |" in (ws / "model_cards/model_card.md").read_text()
    r = results(ws)
    better = r["test_score"] > r["baseline_test_score"] if r["higher_is_better"] else \
        r["test_score"] < 0.9 * r["baseline_test_score"]
    assert better, r
