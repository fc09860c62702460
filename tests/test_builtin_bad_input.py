"""Bad data for the built-in agent: one clear line at phase 1, exit 2, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import mlpipe

PHASE1_OUTPUTS = ["ml-requirements.md", "ml-architecture.md", "tech-stack.md", "project-plan.md",
                  "ml-spec.yaml", "data/profile.json"]


def run_phase1(ws: Path, data: str, problem: str = "predict churn", *extra: str):
    return mlpipe("run", problem, "--data", data, "-w", str(ws), "--runner", "builtin",
                  "--phase", "phase1", *extra, timeout=300)


def assert_refused(res, ws: Path, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    left = [p for p in PHASE1_OUTPUTS if (ws / p).exists()]
    assert not left, f"half-written: {left}"
    assert not list(ws.glob("**/.*.tmp*"))
    return lines[0]


def small_table(rows: int = 60, target: str = "Yes/No") -> str:
    out = ["customerID,tenure,plan,Churn"]
    for i in range(rows):
        value = {"Yes/No": "Yes" if i % 3 == 0 else "No", "one": "No", "none": ""}[target]
        out.append(f"C{i},{i % 40},{'ab'[i % 2]},{value}")
    return "\n".join(out) + "\n"


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("")
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "empty.csv", "is empty")


def test_binary_file_is_not_a_table(tmp_path: Path) -> None:
    f = tmp_path / "photo.csv"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "photo.csv",
                   "not a text table")


def test_prose_is_not_a_table(tmp_path: Path) -> None:
    f = tmp_path / "notes.csv"
    f.write_text("Meeting notes\nwe should predict churn soon\nthanks\n")
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "notes.csv",
                   "not a table", "1 column")


def test_no_matching_target(tmp_path: Path) -> None:
    f = tmp_path / "customers.csv"
    f.write_text(small_table())
    line = assert_refused(run_phase1(tmp_path / "ws", str(f), "predict the weather tomorrow"),
                          tmp_path / "ws", "no column matches", "--target", "'Churn'", "'tenure'")
    assert "weather" in line


def test_unknown_explicit_target(tmp_path: Path) -> None:
    f = tmp_path / "customers.csv"
    f.write_text(small_table())
    assert_refused(run_phase1(tmp_path / "ws", str(f), "predict churn", "--target", "Nope"),
                   tmp_path / "ws", "--target 'Nope' is not a column", "'Churn'")


def test_one_class_target(tmp_path: Path) -> None:
    f = tmp_path / "customers.csv"
    f.write_text(small_table(target="one"))
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "'Churn'",
                   "single class")


def test_target_entirely_missing(tmp_path: Path) -> None:
    f = tmp_path / "customers.csv"
    f.write_text(small_table(target="none"))
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "'Churn'",
                   "entirely missing")


def test_non_utf8_text(tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes(small_table().encode() + "Zoë,1,é,No\n".encode("latin-1"))
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "latin1.csv",
                   "not UTF-8", "byte 0xeb", "re-save it as UTF-8")


def test_column_with_100k_categories(tmp_path: Path) -> None:
    f = tmp_path / "payments.csv"
    lines = ["payment_id,amount,merchant,Churn"]
    lines += [f"P{i},{i % 97}.5,merchant-{i % 100_000},{'Yes' if i % 4 == 0 else 'No'}"
              for i in range(150_000)]
    f.write_text("\n".join(lines) + "\n")
    assert_refused(run_phase1(tmp_path / "ws", str(f)), tmp_path / "ws", "'merchant'",
                   "100000 distinct categories")


def test_unreachable_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no-such-dir/crm.db?table=customers"
    assert_refused(run_phase1(tmp_path / "ws", url), tmp_path / "ws", "no SQLite database at",
                   "no-such-dir/crm.db")


@pytest.mark.parametrize("url", ["postgresql://analyst:s3cret-pw@127.0.0.1:1/crm?table=customers"])
def test_unreachable_server_database_masks_the_password(tmp_path: Path, url: str) -> None:
    res = run_phase1(tmp_path / "ws", url)
    line = assert_refused(res, tmp_path / "ws", "analyst:***@127.0.0.1:1")
    assert "s3cret-pw" not in res.stdout + res.stderr + line
