"""Runs a test file of the workspace under pytest, in a subprocess with a time limit — and,
because tests that pass whatever the workspace holds prove nothing, runs it again on scratch
copies of the workspace the gate has broken (`sabotage`), where at least one test must fail:

- `dummy_model`: every copy of the saved model (files with the sha256 of artifacts/model.joblib,
  and every file of that name, e.g. a registry's versions) replaced by a scikit-learn dummy the
  gate fits on the train split (class prior / mean) — the API then serves a wrong model too;
- `split_overlap`: rows of the test split copied into the train split;
- `split_rows_lost`: a tenth of the test split's rows deleted.

The agent's tests count only as an extra: the gate's own checks measure the contract.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

COUNTS = ("passed", "failed", "skipped", "errors")
SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected|xfailed|xpassed)")
Sabotage = Literal["dummy_model", "split_overlap", "split_rows_lost"]
WHAT = {
    "dummy_model": ("replaced every copy of {model} by a dummy (class prior / mean) model",
                    "the model"),
    "split_overlap": ("copied {n} rows of {test} into {train}", "the splits (overlap)"),
    "split_rows_lost": ("deleted {n} rows of {test}", "the splits (lost rows)"),
}
SKIP_COPY = ("__pycache__", ".git", ".venv", "venv", "node_modules", ".pytest_cache", "runs",
             "gate-logs", ".mypy_cache", ".ruff_cache")


class PytestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    required: bool = Field(default=True, description="a missing test file fails (else: skipped)")
    min_tests: int = Field(default=1, ge=0)
    sabotage: list[Sabotage] = Field(default_factory=list, description=(
        "ways the gate breaks a scratch copy of the workspace; the tests must fail on each"))
    model: str = "artifacts/model.joblib"
    train: str = "data/splits/train.csv"
    test: str = "data/splits/test.csv"

    def describe(self) -> str:
        text = (f"the gate runs `python -m pytest -q {self.path}` from the workspace folder: it "
                f"must exit 0 with at least {self.min_tests} passed test(s)"
                + ("" if self.required else " (a missing file is skipped)") + ".")
        if self.sabotage:
            broken = "; ".join(WHAT[k][0].format(model=f"`{self.model}`", n="some",
                                                 test=f"`{self.test}`", train=f"`{self.train}`")
                               for k in self.sabotage)
            text += (" Then it runs the same tests on a scratch copy of the workspace that it "
                     f"broke on purpose ({broken}): they must fail there, so tests that cannot "
                     "tell a broken workspace from a good one fail this check.")
        return text


def _run(ctx: CheckContext, folder: Path, path: str, timeout_s: float,
         first_failure: bool = False) -> tuple[Any, dict[str, int]]:
    """Run pytest; the counts (passed, failed, skipped, errors) come from its JUnit XML, which
    every verbosity writes (a workspace's `addopts = -q` makes `-q` print no summary line at
    all), else from the summary line."""
    with tempfile.TemporaryDirectory(prefix="mlpipe-pytest-") as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ".",
                f"--junitxml={junit}", path]
        if first_failure:  # on a sabotaged copy one failure is the answer
            argv.insert(3, "-x")
        env = proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(folder),
                                       "PYTHONDONTWRITEBYTECODE": "1"})
        res = proc.run(argv, cwd=folder, env=env, timeout_s=max(5.0, timeout_s))
        counts = _junit_counts(junit)
    if counts is None:
        counts = {}
        for line in reversed(res.output.splitlines()):
            found = SUMMARY.findall(line)
            if found and ("passed" in line or "failed" in line or "error" in line or " in " in line):
                for n, word in found:
                    counts["errors" if word in ("error", "errors") else word] = int(n)
                break
    return res, {k: counts.get(k, 0) for k in COUNTS} | counts


def _junit_counts(path: Path) -> dict[str, int] | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if not suites:
        return None
    total = {k: sum(int(s.get(k) or 0) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return {"passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
            "failed": total["failures"], "skipped": total["skipped"], "errors": total["errors"]}


def tally(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in COUNTS)


def pytest(ctx: CheckContext, params: PytestParams) -> CheckResult:
    started = time.monotonic()
    target = ctx.workspace / params.path
    if not target.exists():
        if params.required:
            return result("failed", f"{params.path} does not exist", path=params.path)
        return result("skipped", f"{params.path} does not exist", path=params.path)
    share = ctx.timeout_s / (1 + len(params.sabotage))
    res, counts = _run(ctx, ctx.workspace, params.path, share)
    evidence: dict[str, object] = {"command": f"pytest -q {params.path}", "exit": res.returncode,
                                   **counts}
    if not res.ok:
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-15:]
        evidence["output_tail"] = tail
        if res.returncode == 1 or counts["failed"] or counts["errors"]:
            return result("failed", f"{tally(counts)} ({res.describe()})", **evidence)
        return result("error", f"pytest could not run {params.path} ({res.describe()})", **evidence)
    if counts["passed"] < params.min_tests:
        return result("failed", f"{counts['passed']} tests passed, expected at least "
                      f"{params.min_tests} ({tally(counts)})", **evidence)
    sabotaged: dict[str, Any] = {}
    for kind in params.sabotage:
        left = ctx.timeout_s - (time.monotonic() - started) - 5
        try:
            outcome = _sabotaged_run(ctx, params, kind, left)
        except _CannotSabotage as e:
            return result("error", f"the gate could not break a copy of the workspace to test "
                          f"{params.path} ({kind}): {e}", **evidence)
        sabotaged[kind] = outcome
        evidence["sabotage"] = sabotaged
        if outcome["timed_out"]:
            return result("error", f"{params.path} did not finish on the copy where the gate "
                          f"{outcome['did']} ({outcome['describe']})", **evidence)
        if outcome["exit"] == 0:
            return result("failed", f"{params.path} still passes ({outcome['passed']} passed) "
                          f"when the gate {outcome['did']}: its tests do not test "
                          f"{WHAT[kind][1]}", **evidence)
    caught = "".join(f"; fails when the gate {o['did']} ({o['failed']} failed, {o['errors']} "
                     f"errors)" for o in sabotaged.values())
    return result("passed", f"{tally(counts)}{caught}", **evidence)


class _CannotSabotage(Exception):
    pass


def _sabotaged_run(ctx: CheckContext, params: PytestParams, kind: str,
                   timeout_s: float) -> dict[str, Any]:
    assert ctx.scratch is not None
    copy = ctx.scratch / "workspace"  # a neutral name: tests cannot tell the copy apart
    shutil.copytree(ctx.workspace, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(*SKIP_COPY))
    if kind == "dummy_model":
        did = _dummy_model(ctx, params, copy)
    else:
        did = _break_splits(params, copy, kind)
    try:
        res, counts = _run(ctx, copy, params.path, timeout_s, first_failure=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return {"did": did, "exit": res.returncode, "timed_out": res.timed_out,
            "describe": res.describe(), **{k: counts[k] for k in COUNTS}}


def _break_splits(params: PytestParams, copy: Path, kind: str) -> str:
    train, test = copy / params.train, copy / params.test
    for p in (train, test):
        if not p.is_file():
            raise _CannotSabotage(f"{p.relative_to(copy).as_posix()} does not exist")
    with test.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if len(body) < 10:
        raise _CannotSabotage(f"{params.test} holds only {len(body)} rows")
    n = max(5, len(body) // 10)
    step = len(body) / n
    picked = [int(i * step) for i in range(n)]  # spread over the file, not its first rows
    if kind == "split_overlap":
        with train.open(encoding="utf-8", newline="") as f:
            train_header = next(csv.reader(f), [])
        if train_header != header:
            order = [header.index(c) if c in header else None for c in train_header]
            moved = [[body[i][j] if j is not None else "" for j in order] for i in picked]
        else:
            moved = [body[i] for i in picked]
        text = train.read_text(encoding="utf-8")
        with train.open("a", encoding="utf-8", newline="") as f:
            if text and not text.endswith("\n"):
                f.write("\n")
            csv.writer(f).writerows(moved)
    else:
        keep = set(range(len(body))) - set(picked)
        with test.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(body[i] for i in sorted(keep))
    return WHAT[kind][0].format(n=n, test=params.test, train=params.train, model=params.model)


def _dummy_model(ctx: CheckContext, params: PytestParams, copy: Path) -> str:
    import pandas as pd

    from mlpipe_flow.checks.artifacts import ProbeError, feature_types, run_model
    from mlpipe_flow.state import file_sha256

    spec = ctx.spec() or {}
    model = ctx.path(params.model)
    if not model.is_file() or not spec.get("feature_columns") or not spec.get("target"):
        raise _CannotSabotage(f"needs {params.model} and ml-spec.yaml's features and target")
    try:
        train = pd.read_csv(ctx.path(params.train), low_memory=False)
    except (OSError, ValueError) as e:
        raise _CannotSabotage(f"cannot read {params.train}: {e}") from None
    features, target = list(spec["feature_columns"]), spec["target"]
    train = train[train[target].notna()]
    assert ctx.scratch is not None
    out = ctx.scratch / "dummy-model.joblib"
    try:
        run_model(ctx, params.model, features, feature_types(train, features),
                  [{"op": "dummy", "fit_frame": train, "label": target, "out": str(out),
                    "regression": spec.get("problem_type") == "regression"}], timeout_s=120)
    except ProbeError as e:
        raise _CannotSabotage(str(e)) from None
    if not out.is_file():
        raise _CannotSabotage("the dummy model was not written")
    digest, size = file_sha256(model), model.stat().st_size
    replaced = 0
    for f in copy.rglob("*"):
        if f.is_symlink() or not f.is_file():
            continue
        if f.name == model.name or (f.stat().st_size == size and file_sha256(f) == digest):
            shutil.copyfile(out, f)
            replaced += 1
    link = copy / params.model
    if link.is_symlink():
        link.unlink()
        shutil.copyfile(out, link)
        replaced += 1
    return WHAT["dummy_model"][0].format(model=params.model) + f" ({replaced} file(s))"
