"""A PostgreSQL table as the data source, end to end, against a real server.

The fixture starts Debian's PostgreSQL in a temporary folder (tests/pg_server.py): on
127.0.0.1 only, with a password (scram-sha-256) so that its masking is checked on a password the
server really needs. Without the binaries (`make postgresql` installs them, as root), a user
to run them as, or psycopg, the tests skip and say why.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import pg_server
from builtin_helpers import home_of, run_phases
from conftest import mlpipe
from pg_server import DB, PASSWORD, URL_PASSWORD, USER, Postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    why = pg_server.unavailable()
    if why:
        pytest.skip(why)
    with pg_server.running() as server:
        yield server


def files_holding(root: Path, needle: str, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.relative_to(root).as_posix() not in skip:
            with contextlib.suppress(OSError):
                if needle.encode() in p.read_bytes():
                    found.append(p.relative_to(root).as_posix())
    return found


@pytest.mark.slow
def test_postgres_table_source_phases_1_to_3(postgres: Postgres, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    url = postgres.url()
    outputs = []
    first = mlpipe("run", "predict churned customers", "-w", str(ws), "--runner", "builtin",
                   "--phase", "phase1", "--data", url, env=home_of(ws), timeout=600)
    outputs.append(first.stdout + first.stderr)
    assert first.returncode == 0, (first.stdout[-3000:], first.stderr[-2000:])
    assert "could not copy the database rows" not in first.stdout + first.stderr
    run_phases(ws, "predict churned customers", None, "phase2", "phase3")

    spec = yaml.safe_load((ws / "ml-spec.yaml").read_text())
    shown = f"postgresql+psycopg://{USER}:***@127.0.0.1:{postgres.port}/{DB}"
    assert spec["data_source"] == {"kind": "url", "url": shown, "table": "customers",
                                   "format": "sql"}
    assert spec["target"] == "churned" and spec["problem_type"] == "binary_classification"
    assert spec["id_columns"] == ["customer_id"]
    assert {"monthly_fee", "total_spend", "age"} <= set(spec["feature_columns"])
    for split in ("train", "valid", "test"):
        assert (ws / f"data/splits/{split}.csv").stat().st_size > 10_000 * (split == "train")
    sizes = (ws / "data/splits/sizes.json").read_text()
    assert sum(int(n) for n in re.findall(r"\d+", sizes)) == 3000
    card = (ws / "model_cards/model_card.md").read_text()
    assert f"`{shown}`, table `customers`" in card
    # the money columns (numeric: Decimal in Python) were read as numbers, not as categories
    schema = json.loads((ws / "data_quality/schema.json").read_text())
    types = {c["name"]: c["type"] for c in schema["columns"]}
    assert types["monthly_fee"] == types["total_spend"] == "number", types
    assert types["age"] == "integer" and types["region"] == "category", types

    # the password is in .mlpipe/data-url (0600, how the pipeline reaches the database) only
    assert (ws / ".mlpipe/data-url").stat().st_mode & 0o077 == 0
    for where in (ws, tmp_path / "home"):
        for needle in (PASSWORD, URL_PASSWORD):
            assert files_holding(where, needle, skip=(".mlpipe/data-url",)) == [], (where, needle)
    assert not any(PASSWORD in o or URL_PASSWORD in o for o in outputs)


def test_a_table_that_does_not_exist_is_refused_before_anything(postgres: Postgres,
                                                                 tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    res = mlpipe("run", "predict churned customers", "-w", str(ws), "--runner", "builtin",
                 "--phase", "phase1", "--data", postgres.url("clients"), env=home_of(ws),
                 timeout=300)
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert "no table 'clients'" in lines[0] and "customers" in lines[0], lines[0]
    assert PASSWORD not in res.stdout + res.stderr and URL_PASSWORD not in res.stdout + res.stderr
    assert f"{USER}:***@127.0.0.1:{postgres.port}/{DB}" in lines[0]
    assert not ws.exists(), sorted(p.name for p in ws.rglob("*"))


def test_a_wrong_password_is_one_line_before_anything(postgres: Postgres, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    url = postgres.url().replace(URL_PASSWORD, "not-it")
    res = mlpipe("run", "predict churned customers", "-w", str(ws), "--runner", "builtin",
                 "--phase", "phase1", "--data", url, env=home_of(ws), timeout=300)
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert "password authentication failed" in lines[0] and "not-it" not in lines[0], lines[0]
    assert not ws.exists()


def test_rows_in_primary_key_order_and_read_errors_in_one_line(postgres: Postgres) -> None:
    """The workspace's ingestion code (the built-in agent's template) reads a table in its
    primary key's order: PostgreSQL returns a bare SELECT's rows in the order they lie on disk,
    which an UPDATE changes. A statement that fails is one DataLoadError line, password masked
    (pandas wraps SQLAlchemy's error in its own)."""
    from mlpipe_flow.builtin.templates.data_ingestion import ingest

    with postgres.connect() as con:
        con.execute("UPDATE customers SET age = age WHERE satisfaction > 7")
        on_disk = [r[0] for r in con.execute("SELECT customer_id FROM customers")]
    assert on_disk != sorted(on_disk)
    df = ingest.read_sql(postgres.url())
    assert list(df["customer_id"]) == sorted(on_disk)
    assert df["monthly_fee"].dtype == "float64" and df["total_spend"].isna().sum() > 0
    with pytest.raises(ingest.DataLoadError) as e:
        ingest.read_sql(postgres.url("clients"), attempts=1)
    message = str(e.value)
    assert 'relation "clients" does not exist' in message and len(message.splitlines()) == 1
    assert f"{USER}:***@" in message and PASSWORD not in message and URL_PASSWORD not in message
