"""A PostgreSQL table as the data source, end to end, against a real server.

The fixture starts Debian's PostgreSQL (`/usr/lib/postgresql/<version>/bin`) in a temporary
folder: TCP on 127.0.0.1 only, on a free port, with a password (scram-sha-256) so that its
masking is checked on a password the server really needs, and a unix socket in that folder
(trust) through which the table is loaded. initdb refuses to run as root, so as root the
server runs as the `postgres` system user. Without the binaries (`make postgresql` installs
them, as root) or without such a user, the tests skip and say why.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builtin_helpers import home_of, run_phases
from conftest import REPO, mlpipe

PG_ROOT = Path("/usr/lib/postgresql")
USER = "analyst"
PASSWORD = "s3cret:pw/@x"  # characters a URL must escape; never shown anywhere
URL_PASSWORD = "s3cret%3Apw%2F%40x"
DB = "crm"

#: the example churn data's columns as PostgreSQL types (money as numeric: Decimal in Python)
COLUMNS = {
    "customer_id": "text primary key", "age": "integer", "region": "text", "plan": "text",
    "contract": "text", "payment_method": "text", "tenure_months": "integer",
    "monthly_fee": "numeric(10, 2)", "total_spend": "numeric(12, 2)", "support_calls": "integer",
    "last_login_days": "integer", "satisfaction": "smallint", "churned": "text",
}


@dataclass
class Postgres:
    port: int
    socket_dir: Path

    def url(self, table: str = "customers", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{USER}:{URL_PASSWORD}@127.0.0.1:{self.port}/{DB}?table={table}"

    def connect(self, dbname: str = DB):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=USER,
                               dbname=dbname, autocommit=True)


def pg_bin() -> Path | None:
    """The newest installed version's bin folder."""
    found = sorted(PG_ROOT.glob("*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0])
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_server_user() -> tuple[list[str], str | None]:
    """(the prefix that runs a command as the server's user, why it cannot be run)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return [], "running as root and there is no `postgres` user for initdb to run as"
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"], None
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"], None
    return [], "running as root and neither runuser nor setpriv can switch to `postgres`"


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg", reason="psycopg is not installed (it is in the [ml] extra)")
    bindir = pg_bin()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries ({PG_ROOT}/*/bin/initdb); `make postgresql` "
                    "installs Debian's as root")
    prefix, why = as_server_user()
    if why:
        pytest.skip(why)
    # not under pytest's own tmp folder: that is private to this user, and the server's user
    # must reach its data folder and socket (a short path, too: a socket path has a limit)
    root = Path(tempfile.mkdtemp(prefix="mlpipe-pg-"))
    data = root / "data"
    started = False
    try:
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if prefix:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        res = _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", USER,
                    f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--locale=C", "--no-sync"])
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        pwfile.unlink()
        for _ in range(3):  # a free port can be taken between asking and binding
            port = free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                    "-c shared_buffers=16MB -c max_connections=20")
            res = _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "server.log"), "-o", opts, "-w", "-t", "60", "start"])
            started = res.returncode == 0
            if started:
                break
        log = root / "server.log"
        assert started, res.stderr[-1000:] + (log.read_text()[-2000:] if log.is_file() else "")
        server = Postgres(port, root)
        with server.connect("postgres") as con:
            con.execute(f"CREATE DATABASE {DB}")
        load_customers(server)
        yield server
    finally:
        if started:
            stop = _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                         "-t", "30", "stop"])
            if stop.returncode != 0:
                kill_postmaster(data)
        shutil.rmtree(root, ignore_errors=True)


def kill_postmaster(data: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 9)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def load_customers(server: Postgres) -> int:
    """examples/churn/customers.csv as a typed table; blank cells are NULL."""
    with (REPO / "examples/churn/customers.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == list(COLUMNS), header
    cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    with server.connect() as con:
        con.execute(f"CREATE TABLE customers ({cols})")
        with con.cursor() as cur, cur.copy(f"COPY customers ({', '.join(header)}) FROM STDIN") as cp:
            for row in body:
                cp.write_row([v if v != "" else None for v in row])
        (count,) = con.execute("SELECT count(*) FROM customers").fetchone() or (0,)
    assert count == len(body)
    return count


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
