"""`mlpipe report`: the run's evidence as one self-contained HTML page, checked as rendered in
headless Chromium (Debian's package, driven by Playwright), not as HTML text.

The screenshot in the README comes from here: MLPIPE_REPORT_SCREENSHOT=docs/report.png makes
`test_report_of_the_passing_run` save the top of the rendered page there.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, mlpipe

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = {"x": 0, "y": 0, "width": 1200, "height": 2150}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package: `make chromium` as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (the [dev] extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Opened:
    """A report opened from its file, with every request the page made and every console error."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.url, wait_until="load")
        self.text: str = self.page.inner_text("body")

    def plots(self) -> list[dict[str, Any]]:
        return list(self.page.eval_on_selector_all("img", """els => els.map(e => {
            const r = e.getBoundingClientRect();
            return {alt: e.alt, complete: e.complete, natural: [e.naturalWidth, e.naturalHeight],
                    shown: [r.width, r.height]}; })"""))

    def shown(self, selector: str) -> str:
        return str(self.page.inner_text(selector)).strip()

    def assert_self_contained(self) -> None:
        # data: URIs (the plots) are not network requests; Chromium reports none for them
        assert [u for u in self.requests if not u.startswith("data:")] == [self.url], self.requests
        assert not self.errors, self.errors  # a blocked fetch would be a CSP error here


def one_line_error(res: Any) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlpipe: error: "), res.stderr
    return str(lines[0])


def check_id(workflow: Path, kind: str) -> tuple[str, str]:
    from mlpipe_flow.workflow import load_workflow

    wf = load_workflow(workflow)
    return next((p.id, c.id) for p in wf.phases for c in wf.gates[p.gate].checks if c.kind == kind)


def test_report_of_the_passing_run(passing, tmp_path: Path, browser: Any) -> None:  # type: ignore[no-untyped-def]
    from mlpipe_flow.records import RunRecords
    from mlpipe_flow.workflow import load_workflow

    out = tmp_path / "out" / "report.html"
    res = mlpipe("report", "-w", str(passing.ws), "-o", str(out), env={"MLPIPE_HOME": str(passing.home)})
    assert res.returncode == 0, res.stderr
    assert out.is_file() and f"wrote {out}" in res.stdout
    state = json.loads((passing.ws / ".mlpipe" / "state.json").read_text())
    records = RunRecords(state["run_id"], passing.home / "records")

    def evidence(kind: str) -> dict[str, Any]:
        phase, check = check_id(passing.workflow, kind)
        ev = records.passed_check(phase, check)
        assert ev is not None, (phase, check)
        return ev

    page = Opened(browser, out)
    page.assert_self_contained()
    for p in load_workflow(passing.workflow).phases:  # the six phases, by id and name
        assert p.id in page.text and p.name in page.text, p.id
    # every phase's checks are shown from the report it passed with (in folds, closed: textContent)
    assert str(page.page.text_content("#checks")).count("from mlpipe's records") == 6
    plots = page.plots()
    assert len(plots) == 5, plots  # timeline, score, CV, latency, drift (no tokens: builtin agent)
    for img in plots:
        assert img["complete"] and min(img["natural"]) > 0 and min(img["shown"]) > 50, img

    score = evidence("model_beats_baseline")
    assert page.shown("#model-score") == f"{score['score']:.4f}"
    assert page.shown("#model-baseline") == f"{score['baseline']:.4f}"
    assert page.shown("#cv-std") == f"{evidence('cv_stability')['gate_cv_std']:.4f}"
    load = evidence("api_load")
    assert page.shown("#load-p95") == f"{load['p95_ms']} ms"
    hist = load["latency_histogram_ms"]  # the load test's distribution, recorded by the gate
    assert sum(hist["count"]) == load["ok"] and len(hist["le"]) == len(hist["count"]) <= 48
    assert load["latency_quantiles_ms"]["p95"] == pytest.approx(load["p95_ms"], abs=0.01)
    drill = evidence("drift_drill")
    rows = page.page.eval_on_selector_all("#drift-samples tr td:first-child",
                                          "els => els.map(e => e.innerText)")
    assert rows == [s["sample"] for s in drill["samples"]]

    shot = tmp_path / "report.png"
    page.page.screenshot(path=str(shot), clip=SCREENSHOT, full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("MLPIPE_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, REPO / os.environ["MLPIPE_REPORT_SCREENSHOT"])


def test_a_failed_run_prints_its_report_which_says_what_did_not_pass(
        ws: Path, csv_file: Path, browser: Any) -> None:
    env = {"FAKE_AGENT_FAIL_ALWAYS": "phase2", "MLPIPE_REPORT": "true"}
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--max-attempts", "2",
                 env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    report = ws.resolve() / ".mlpipe" / "report.html"
    assert f"Report: {report.as_uri()}" in res.stdout.splitlines()
    page = Opened(browser, report)
    page.assert_self_contained()
    assert len(page.plots()) == 1 and min(page.plots()[0]["natural"]) > 0  # the timeline
    assert "phase2 has not passed (stalled): the gate report of its last attempt (attempt-2)" in page.text
    assert "phase3 has not passed (pending): no gate report yet" in page.text
    assert "No measured score yet" in page.text and "No load test yet" in page.text
    failing = page.page.eval_on_selector_all(
        "#checks-phase2 tr", "rows => rows.filter(r => r.innerText.startsWith('failed')).length")
    assert failing >= 1
    phase2 = page.page.eval_on_selector_all("#phases tr", "rows => rows.map(r => r.innerText)")[2]
    assert phase2.split("\t")[:5] == ["phase2", "Data Pipeline", "stalled", "20-45%", "2"], phase2


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"no mlpipe run in {empty}" in one_line_error(mlpipe("report", "-w", str(empty)))
    missing = tmp_path / "nowhere"
    assert f"workspace {missing} does not exist" in one_line_error(mlpipe("report", "-w", str(missing)))

    ws = tmp_path / "ws"
    (ws / ".mlpipe").mkdir(parents=True)
    (ws / ".mlpipe" / "state.json").write_text(json.dumps(
        {"run_id": "20260101-000000-abcdef", "problem": "p", "runner": "builtin", "workflow": str(REPO),
         "phases": []}))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "report.html"  # its folder is a file: cannot be written, even as root
    res = mlpipe("report", "-w", str(ws), "-o", str(bad))
    assert f"cannot write the report to {bad}" in one_line_error(res)
    assert "it is a folder" in one_line_error(mlpipe("report", "-w", str(ws), "-o", str(tmp_path)))
    (ws / ".mlpipe" / "state.json").write_text("{")
    assert "state.json is corrupt" in one_line_error(mlpipe("report", "-w", str(ws)))


def test_hostile_evidence_is_escaped_and_cannot_break_the_page(passing, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Check messages, evidence and attempt files are the workspace's (an agent's): markup in
    them stays text, and malformed or odd values (mathtext `$`, infinities, a non-list) cost at
    most a plot, never the page."""
    ws = tmp_path / "ws"
    shutil.copytree(passing.ws, ws, symlinks=True)
    home = tmp_path / "home"
    shutil.copytree(passing.home, home, symlinks=True)
    state_file = ws / ".mlpipe" / "state.json"
    state = json.loads(state_file.read_text())
    state["problem"] = 'predict <script>alert("x")</script> churn'
    state_file.write_text(json.dumps(state))
    runs = ws / ".mlpipe" / "runs" / state["run_id"]
    (runs / "phase1" / "attempt-1" / "result.json").write_text(json.dumps({"duration_s": 1e400}))
    (runs / "phase2" / "attempt-1" / "gate.json").write_text(json.dumps({"checks": 5}))
    phase, check = check_id(passing.workflow, "drift_drill")  # a detector naming "$\\foo$"
    rec = home / "records" / state["run_id"] / "phases" / f"{phase}.json"
    record = json.loads(rec.read_text())
    for c in record["report"]["checks"]:
        if c["id"] == check:
            for s in c["evidence"]["samples"]:
                s["flagged"] = [*s.get("flagged", []), "$\\foo$", "<img src=x onerror=alert(1)>"]
            c["message"] = "<b>bold</b> claim"
    rec.write_text(json.dumps(record))

    out = tmp_path / "report.html"
    res = mlpipe("report", "-w", str(ws), "-o", str(out), env={"MLPIPE_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("<img ") == 5  # every plot still drawn: the labels are text, not mathtext


def test_run_junit_to_a_folder_is_refused_before_the_run(ws: Path, csv_file: Path) -> None:
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--junit", str(ws.parent))
    assert "cannot write the JUnit report to" in one_line_error(res) and "--junit" in res.stderr
    assert not (ws / ".mlpipe").exists()  # nothing ran, nothing half-written
