"""Runs the workspace's drift detector for the drift drill, in a child process of the
workspace's own interpreter: importing the agent's module runs its code, so it never happens
inside mlpipe.

    python drift_probe.py REQUEST.json RESPONSE.json

The request names the detector module, the reference CSV and the gate's samples (CSV files it
wrote); for each sample the probe calls `detect_drift(reference, current)` and returns what the
check needs: whether drift was detected and which features the result flags. Then it runs the
module as a script (`runpy`, as `python detect_drift.py --reference R --current C` would) on the
samples the request names, and returns each run's exit status and output: one interpreter
start for everything. This file is run by path and imports nothing of mlpipe.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

FLAG_KEYS = ("drift", "drifted", "drift_detected", "is_drift", "detected")


def _true(value: Any) -> bool:
    if hasattr(value, "item"):  # numpy.bool_
        value = value.item()
    return value is True


def flags(result: dict[str, Any]) -> dict[str, bool]:
    """{feature: flagged} from the result's `features` mapping (or list of names)."""
    out: dict[str, bool] = {}
    feats = result.get("features")
    if isinstance(feats, dict):
        for name, stats in feats.items():
            if isinstance(stats, dict):
                out[str(name)] = any(_true(stats.get(k)) for k in FLAG_KEYS)
            else:
                out[str(name)] = _true(stats)
    for key in ("drifted_features", "drifted"):
        names = result.get(key)
        if isinstance(names, list):
            for name in names:
                out[str(name)] = True
    return out


def run_script(script: str, args: list[str]) -> dict[str, Any]:
    """The module run as `python script args...`: its exit status and what it printed."""
    buf = io.StringIO()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).parent))
    code: Any = 0
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if e.code is not None else 0
    except Exception as e:  # noqa: BLE001 - a crash is exit status 1 with its message
        code = 1
        buf.write(f"\n{type(e).__name__}: {str(e)[:300]}")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    if not isinstance(code, int):
        buf.write(f"\n{code}")
        code = 1
    return {"exit": code, "stdout": buf.getvalue()[-20000:]}


def main(argv: list[str]) -> int:
    import pandas as pd

    with open(argv[0], encoding="utf-8") as f:
        req = json.load(f)
    out: dict[str, Any] = {"results": []}
    try:
        spec = importlib.util.spec_from_file_location("mlpipe_gate_drift_module", req["module"])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {req['module']}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        detect = getattr(module, "detect_drift", None)
        if not callable(detect):
            raise AttributeError("the module defines no detect_drift(reference, current) function")
        reference = pd.read_csv(req["reference"])
        for path in req["samples"]:
            current = pd.read_csv(path)
            try:
                res = detect(reference.copy(), current)
                if not isinstance(res, dict):
                    raise TypeError(f"detect_drift returned {type(res).__name__}, not a dict")
                out["results"].append({"drift_detected": _true(res.get("drift_detected")),
                                       "raw": repr(res.get("drift_detected"))[:40],
                                       "flags": flags(res)})
            except Exception as e:  # noqa: BLE001 - report the agent's error per sample
                out["results"].append({"error": f"{type(e).__name__}: {str(e)[:300]}"})
    except Exception as e:  # noqa: BLE001 - any failure to load is the answer
        out = {"error": f"{type(e).__name__}: {str(e)[:300]}",
               "trace": traceback.format_exc()[-1500:]}
    else:
        out["cli"] = [run_script(req["module"], ["--reference", req["reference"], "--current", path])
                      for path in req.get("cli", [])]
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
