"""A run checks its inputs before it creates anything: one line, exit 2, and the workspace
folder is not even created (no .mlpipe/, no staged data, no history). Each case is an input
that an earlier version accepted and a later phase rejected after wasted attempts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import mlpipe


def refused(ws: Path, *args: str, env: dict[str, str] | None = None, needles: tuple[str, ...] = (),
            home: Path | None = None) -> str:
    res = mlpipe("run", *args, "-w", str(ws), env=env, timeout=120)
    assert res.returncode == 2, (res.returncode, res.stdout[-1500:], res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not ws.exists() or not any(ws.iterdir()), sorted(p.name for p in ws.iterdir())
    return lines[0]


def table(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_an_empty_problem(tmp_path: Path, csv_file: Path) -> None:
    refused(tmp_path / "ws", "  ", "--data", str(csv_file), "--runner", "builtin",
            needles=("the problem is empty",))


def test_python_that_does_not_exist(tmp_path: Path, csv_file: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mlpipe.yaml").write_text("python: /nonexistent/python3\n")
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws),
                 "--runner", "builtin")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "mlpipe.yaml: field 'python': /nonexistent/python3 cannot run Python 3" in res.stderr
    assert sorted(p.name for p in ws.iterdir()) == ["mlpipe.yaml"]


def test_duplicate_column_names(tmp_path: Path) -> None:
    f = table(tmp_path / "dup.csv", "id,age,age,y", [f"{i},{i},{i + 1},{i % 2}" for i in range(40)])
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--runner", "builtin",
            needles=("duplicate column names", "'age' at columns 2, 3"))


def test_an_unnamed_column(tmp_path: Path) -> None:
    f = table(tmp_path / "unnamed.csv", "age,,y", [f"{i * 2},{i % 7},{i % 2}" for i in range(40)])
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--runner", "builtin",
            needles=("column 2 has no name",))


def test_an_unnamed_first_column_that_is_not_a_row_counter(tmp_path: Path) -> None:
    f = table(tmp_path / "indexed.csv", ",age,y", [f"{i * 3},{i * 2},{i % 2}" for i in range(40)])
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--runner", "builtin",
            needles=("column 1 has no name", "index=False"))


def test_a_semicolon_csv_with_decimal_commas(tmp_path: Path) -> None:
    f = table(tmp_path / "eu.csv", "age;income;y", [f"{i};{i},5;{i % 2}" for i in range(40)])
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--runner", "builtin",
            needles=("semicolon-separated", "decimal=','"))


@pytest.mark.parametrize(("labels", "needle"), [
    (["No"] * 199 + ["Yes"], "class 'Yes' of the target 'y' has 1 row(s)"),
    (["a"] * 60 + ["b"] * 60 + ["c"], "class 'c' of the target 'y' has 1 row(s)"),
    (["0"] * 195 + ["1"] * 5, "class '1' of the target 'y' has 5 row(s)"),
    (["No"] * 50, "has one value only"),
])
def test_classes_too_small_for_the_split_and_cv(tmp_path: Path, labels: list[str],
                                                needle: str) -> None:
    f = table(tmp_path / "rare.csv", "id,x,y", [f"{i},{i % 7},{v}" for i, v in enumerate(labels)])
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--target", "y",
            "--runner", "builtin", needles=(needle,))


def test_a_numeric_target_with_many_values_is_not_judged_as_classes(tmp_path: Path) -> None:
    f = table(tmp_path / "reg.csv", "id,x,y", [f"{i},{i % 7},{i * 1.5}" for i in range(60)])
    from mlpipe_flow.preflight import check_table

    check_table(str(f), "y")  # passes: a regression's values are not classes


def test_a_target_that_is_not_a_column(tmp_path: Path, csv_file: Path) -> None:
    refused(tmp_path / "ws", "predict churn", "--data", str(csv_file), "--target", "Churned",
            "--runner", "builtin", needles=("--target 'Churned' is not a column",))


def test_a_runner_that_cannot_start(tmp_path: Path, csv_file: Path) -> None:
    import sys

    refused(tmp_path / "ws", "predict churn", "--data", str(csv_file), "--runner", "claude",
            env={"PATH": str(Path(sys.executable).parent)}, needles=("claude",))
    env = {k: "" for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN") if k in os.environ}
    env.update(ANTHROPIC_API_KEY="", ANTHROPIC_AUTH_TOKEN="")
    refused(tmp_path / "ws2", "predict churn", "--data", str(csv_file), "--runner", "anthropic",
            env=env, needles=("needs ANTHROPIC_API_KEY",))


def test_a_sqlite_table_or_file_that_does_not_exist(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as con:
        con.execute("create table customers (id integer, y integer)")
    con.close()
    refused(tmp_path / "ws", "predict y", "--data", f"sqlite:///{db}?table=clients",
            "--runner", "builtin", needles=("has no table 'clients'", "it has: customers"))
    refused(tmp_path / "ws", "predict y", "--data", f"sqlite:///{tmp_path}/nope.db?table=t",
            "--runner", "builtin", needles=("no SQLite database at", "nope.db"))


@pytest.mark.parametrize(("url", "needles"), [
    ("postgresql+psycopg://analyst:s3cret-pw@127.0.0.1:1/crm",
     ("names nothing to read", "?table=NAME")),
    ("postgresql+psycopg://analyst:s3cret-pw@127.0.0.1:1/crm?table=customers",
     ("cannot connect to the database", "127.0.0.1", "port 1")),
    ("postgresql+psycopg2://analyst:s3cret-pw@127.0.0.1:1/crm?table=customers",
     ("cannot load the database driver", "psycopg2", "postgresql+psycopg://")),
    ("nosuchdb://analyst:s3cret-pw@127.0.0.1:1/crm?table=customers",
     ("not a database URL SQLAlchemy can use",)),
])
def test_a_database_server_is_asked_before_anything(tmp_path: Path, url: str,
                                                     needles: tuple[str, ...]) -> None:
    """A server's URL is checked through the gates' interpreter (a child process: mlpipe does not
    import SQLAlchemy or a driver itself); the password is never shown. A live server's missing
    table: tests/test_postgres_source.py."""
    line = refused(tmp_path / "ws", "predict churn", "--data", url, "--runner", "builtin",
                   needles=("analyst:***@127.0.0.1:1/crm", *needles))
    assert "s3cret-pw" not in line


def test_data_too_sparse_for_the_completeness_gate(tmp_path: Path) -> None:
    rows = [f"{i},{'' if i % 3 else i},{'' if i % 2 else 'a'},{i % 2}" for i in range(60)]
    f = table(tmp_path / "sparse.csv", "id,x,c,y", rows)
    refused(tmp_path / "ws", "predict y", "--data", str(f), "--runner", "builtin",
            needles=("of its cells hold a value", "phase2's check 'completeness'",
                     "more than 95%"))
