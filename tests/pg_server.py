"""A throwaway PostgreSQL server for tests and benchmarks: Debian's PostgreSQL
(`/usr/lib/postgresql/<version>/bin`) in a temporary folder, TCP on 127.0.0.1 only, on a free
port, with a password (scram-sha-256) and a unix socket in that folder (trust) through which
tables are loaded. initdb refuses to run as root, so as root the server runs as the `postgres`
system user. `unavailable()` says why no server can be started here (no binaries: `make
postgresql` installs them, as root; no such user; no psycopg)."""

from __future__ import annotations

import contextlib
import csv
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

REPO = Path(__file__).resolve().parent.parent
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


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (it is in the [ml] extra)"
    if pg_bin() is None:
        return (f"no PostgreSQL server binaries ({PG_ROOT}/*/bin/initdb); `make postgresql` "
                "installs Debian's as root")
    return as_server_user()[1]


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})


@contextlib.contextmanager
def running(customers: Path | None = None) -> Iterator[Postgres]:
    """A server with the database DB, and `customers` (default: the example churn data) loaded
    as the table `customers`; stopped and deleted on leaving. Check `unavailable()` first."""
    bindir = pg_bin()
    prefix, why = as_server_user()
    if bindir is None or why:
        raise RuntimeError(unavailable() or why)
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
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
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
        if not started:
            raise RuntimeError("pg_ctl start failed: " + res.stderr[-1000:]
                               + (log.read_text()[-2000:] if log.is_file() else ""))
        server = Postgres(port, root)
        with server.connect("postgres") as con:
            con.execute(f"CREATE DATABASE {DB}")
        load_customers(server, customers or REPO / "examples/churn/customers.csv")
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


def load_customers(server: Postgres, path: Path) -> int:
    """A CSV of the example churn data's columns as a typed table; blank cells are NULL."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if header != list(COLUMNS):
        raise ValueError(f"{path}: columns {header}, expected {list(COLUMNS)}")
    cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    with server.connect() as con:
        con.execute(f"CREATE TABLE customers ({cols})")
        with con.cursor() as cur, cur.copy(f"COPY customers ({', '.join(header)}) FROM STDIN") as cp:
            for row in body:
                cp.write_row([v if v != "" else None for v in row])
        (count,) = con.execute("SELECT count(*) FROM customers").fetchone() or (0,)
    if count != len(body):
        raise RuntimeError(f"loaded {count} of {len(body)} rows")
    return count


