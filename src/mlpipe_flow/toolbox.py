"""What the workspace's interpreter can import, read when a prompt is rendered, so a prompt
names the libraries an agent may use (with their versions) and those it may not, instead of
telling it to find out."""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from mlpipe_flow import proc

#: distributions a prompt names: what an ML pipeline usually reaches for (import name: dist name)
LIBRARIES = {
    "sklearn": "scikit-learn", "pandas": "pandas", "numpy": "numpy", "scipy": "scipy",
    "pyarrow": "pyarrow", "joblib": "joblib", "mlflow": "mlflow-skinny", "fastapi": "fastapi",
    "uvicorn": "uvicorn", "pydantic": "pydantic", "httpx": "httpx",
    "prometheus_client": "prometheus-client", "nbclient": "nbclient", "ipykernel": "ipykernel",
    "matplotlib": "matplotlib", "optuna": "optuna", "shap": "shap", "skops": "skops",
    "xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "torch": "torch",
    "pandera": "pandera", "great_expectations": "great-expectations", "evidently": "evidently",
    "onnxruntime": "onnxruntime", "skl2onnx": "skl2onnx",
}
PROBE = """
import importlib.metadata as md, importlib.util as u, json, sys
out = {}
for mod, dist in json.loads(sys.argv[1]).items():
    if u.find_spec(mod) is None:
        out[mod] = None
        continue
    try:
        out[mod] = md.version(dist)
    except md.PackageNotFoundError:
        out[mod] = ""
print(json.dumps({"python": sys.version.split()[0], "libraries": out}))
"""


@lru_cache(maxsize=4)
def importable(python: str) -> dict[str, object] | None:
    """{"python": "3.11.7", "available": {"sklearn": "1.5.2", ...}, "missing": [...]}, or None
    when the interpreter cannot be run (the prompt then says nothing about libraries)."""
    res = proc.run([python, "-I", "-c", PROBE, json.dumps(LIBRARIES)],
                   cwd=Path(tempfile.gettempdir()), timeout_s=60)
    if not res.ok:
        return None
    try:
        got = json.loads(res.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    libs: dict[str, str | None] = got["libraries"]
    available = {LIBRARIES[m]: v for m, v in libs.items() if v is not None}
    missing = [LIBRARIES[m] for m, v in libs.items() if v is None]
    return {"python": got["python"], "path": python, "available": available, "missing": missing}
