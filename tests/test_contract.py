"""One contract for prompts and gates: every number and definition a gate holds a workspace to
is rendered into that phase's prompt from the gate's own params (`describe()` per check kind),
so the prompt and the gate cannot disagree."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlpipe_flow.checks import CHECKS, rule
from mlpipe_flow.cli import app
from mlpipe_flow.errors import ConfigError
from mlpipe_flow.workflow import default_workflow_dir, load_gate, load_workflow

runner = CliRunner()
WF = load_workflow()
PHASES = [p.id for p in WF.phases]


def numeric_fields(params: Any) -> dict[str, float]:
    """The numbers a params model holds, but for those it declares UNSTATED (timeouts, knobs
    of the gate's own machinery that bind nothing the agent makes)."""
    unstated = getattr(type(params), "UNSTATED", frozenset())
    out = {}
    for name, value in params.model_dump().items():
        if name in unstated or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[name] = value
    return out


def forms(v: float) -> list[str]:
    """How a number may be written in a rule: 0.05, 5%, 1000, 1,000, 20000, 20,000."""
    out = [f"{v:g}", f"{v:,g}"]
    if isinstance(v, float) and 0 < v <= 1:
        out += [f"{v * 100:g}%", f"{v:.0%}", f"{v:.1%}"]
    if float(v).is_integer():
        out += [f"{int(v)}", f"{int(v):,}"]
    return out


def states(text: str, v: float) -> bool:
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text) for f in forms(v))


def test_every_check_kind_can_state_its_rule() -> None:
    missing = [k for k, kind in CHECKS.items() if not callable(getattr(kind.params, "describe", None))]
    assert not missing, f"check kinds without describe(): {missing}"


@pytest.mark.parametrize("phase", PHASES)
def test_each_rule_states_every_number_its_check_uses(phase: str) -> None:
    for check in WF.gates[WF.phase(phase).gate].checks:
        params = CHECKS[check.kind].params.model_validate(check.params)
        text = rule(check)
        assert len(text.split()) >= 6, (check.id, text)
        unstated = {k: v for k, v in numeric_fields(params).items() if not states(text, v)}
        assert not unstated, f"{phase}/{check.id}: the rule does not state {unstated}: {text}"


def render(phase: str, tmp_path: Path, workflow: Path | None = None) -> str:
    args = ["render", phase, "predict customer churn", "--target", "Churn", "-w", str(tmp_path)]
    if workflow is not None:
        args += ["--workflow", str(workflow)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("phase", PHASES)
def test_every_phase_prompt_states_its_gate(phase: str, tmp_path: Path) -> None:
    text = render(phase, tmp_path)
    for check in WF.gates[WF.phase(phase).gate].checks:
        assert check.name in text, check.id
        assert rule(check) in text, check.id


def test_changed_gate_numbers_reach_the_prompts(tmp_path: Path) -> None:
    """Change every number written in the gates: each new number shows in its phase's prompt."""
    wf = tmp_path / "wf"
    shutil.copytree(default_workflow_dir() / "phases", wf / "phases")
    shutil.copytree(default_workflow_dir() / "prompts", wf / "prompts")
    shutil.copytree(default_workflow_dir() / "gates", wf / "gates")
    changed: dict[str, list[tuple[str, str, float]]] = {}
    for path in sorted((wf / "gates").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for check in doc["checks"]:
            for key, value in (check.get("params") or {}).items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                new = value + 1 if isinstance(value, int) else round(value * 0.87, 4)
                check["params"][key] = new
                changed.setdefault(path.stem, []).append((check["id"], key, new))
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert sum(map(len, changed.values())) >= 30
    for gate, numbers in changed.items():
        text = render(gate, tmp_path / gate, wf)
        for check_id, key, new in numbers:
            assert states(text, new), f"{gate}/{check_id}: {key}={new} not in the prompt"


def test_a_number_in_a_check_name_comes_from_its_params(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\nchecks:\n- id: a\n  kind: model_beats_baseline\n"
                    "  name: beats the baseline by > {min_margin:.0%}\n  message: m\n"
                    "  params: {min_margin: 0.25}\n", encoding="utf-8")
    assert load_gate(path).checks[0].name == "beats the baseline by > 25%"
    path.write_text(path.read_text().replace("{min_margin:.0%}", "{margin}"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"checks.0.name: \{margin\} names no param"):
        load_gate(path)


def test_the_card_may_state_the_thresholds_the_other_checks_use() -> None:
    """model-card-claims accepts the margin and CV-std thresholds as stated numbers: they must be
    the ones beats-baseline and cv-stability use, or a card quoting the gate would fail."""
    from mlpipe_flow.contract import gate_params

    p = gate_params(WF, "phase3")
    card = p["model-card-claims"]
    assert card.min_margin == p["beats-baseline"].min_margin
    assert card.max_std == p["cv-stability"].max_std
    assert card.tolerance == p["reported-score"].tolerance == p["mlflow-runs"].tolerance


def test_the_phase2_dag_example_passes_the_gates_dag_check(tmp_path: Path) -> None:
    """The DAG a prompt shows is Airflow 3 code that the gate's own DAG check accepts."""
    import textwrap

    from conftest import run_default_check


    text = render("phase2", tmp_path / "render")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None and "schedule_interval=" not in code.group(1)
    ws = tmp_path / "ws"
    body = textwrap.dedent("""
        import json
        from pathlib import Path

        def main():
            rows = Path("data/raw/x.csv").read_text().splitlines()
            Path("data/{name}.json").write_text(json.dumps(rows))

        if __name__ == "__main__":
            main()
        """)
    for pkg, mod in (("data_ingestion", "ingest"), ("data_quality", "validate"),
                     ("feature_engineering", "features")):
        (ws / pkg).mkdir(parents=True)
        (ws / pkg / "__init__.py").write_text("")
        (ws / pkg / f"{mod}.py").write_text(body.replace("{name}", mod))
    (ws / "airflow_dags").mkdir()
    (ws / "airflow_dags" / "data_pipeline.py").write_text(textwrap.dedent(code.group(1)))
    got = run_default_check(ws, "phase2", "dag_structure", tmp_path / "scratch")
    assert got.status == "passed", got.message


def test_the_prompt_lists_what_the_workspace_interpreter_can_import(tmp_path: Path) -> None:
    """Read at render time from the interpreter the gates use: what it lists as installed
    imports there, what it lists as missing does not."""
    import importlib.util

    from mlpipe_flow.toolbox import LIBRARIES

    text = render("phase3", tmp_path)
    line = re.search(r"Installed there:\n(.*?)\.\n", text, re.S)
    assert line is not None, text[:2000]
    installed = {item.rsplit(" ", 1)[0] for item in line.group(1).replace("\n", " ").split(", ")}
    missing_line = re.search(r"Not installed \(do not use them, and do not install packages\): "
                             r"(.*?)\.\n", text, re.S)
    missing = set(missing_line.group(1).replace("\n", " ").split(", ")) if missing_line else set()
    assert "scikit-learn" in installed and "pandas" in installed
    for module, dist in LIBRARIES.items():
        found = importlib.util.find_spec(module) is not None
        assert (dist in installed) == found and (dist in missing) == (not found), dist
