"""Start-up stays light: --help, phases and gate import none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["anthropic", "fastapi", "sklearn", "pandas", "mlflow", "numpy", "uvicorn", "httpx",
         "matplotlib"]

PROBE = """
import json, sys
sys.argv = ["mlpipe", *json.loads(sys.argv[1])]
from mlpipe_flow.cli import main
try:
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def imported(args: list[str], cwd: Path) -> list[str]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                         text=True, cwd=cwd, timeout=60)
    return json.loads(res.stderr.strip().splitlines()[-1])


def test_help_phases_gate_import_nothing_heavy(tmp_path: Path) -> None:
    assert imported(["--help"], tmp_path) == []
    assert imported(["phases"], tmp_path) == []
    assert imported(["gate", "phase1", "-w", str(tmp_path)], tmp_path) == []
    assert imported(["status", "-w", str(tmp_path)], tmp_path) == []
    assert imported(["report", "--help"], tmp_path) == []


def test_cli_module_import_is_light() -> None:
    code = ("import sys, mlpipe_flow.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('jinja2', 'yaml'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = eval(res.stdout)  # noqa: S307 - our own repr
    assert not [m for m in loaded if m.startswith(("jinja2", "yaml"))]
