"""Runs the workspace's A/B testing module on scenarios the gate made, in a child process of the
workspace's interpreter (the module is the agent's code), and returns its raw answers.

    python ab_probe.py REQUEST.json RESPONSE.json

Request: {"module": "ab_testing.ab_test", "keys": [...], "shares": [0.5, 0.2],
          "compare": [[c_success, c_total, t_success, t_total], ...],
          "decide": [[c_success, c_total, t_success, t_total, c_error_rate, t_error_rate], ...]}
Response: {"assign": {share: [variant per key]}, "assign_again": [variants at shares[0]],
           "compare": [[p_value, significant], ...], "decide": [decision, ...]}
Imports nothing of mlpipe.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    try:
        mod = importlib.import_module(req["module"])
        keys = req["keys"]
        out["assign"] = {str(s): [str(mod.assign(k, treatment_share=s)) for k in keys]
                         for s in req["shares"]}
        out["assign_again"] = [str(mod.assign(k, treatment_share=req["shares"][0]))
                               for k in keys]
        out["compare"] = []
        for cs, ct, ts, tt in req["compare"]:
            c = mod.compare(cs, ct, ts, tt)
            out["compare"].append([float(field(c, "p_value")), bool(field(c, "significant"))])
        out["decide"] = []
        for cs, ct, ts, tt, ce, te in req["decide"]:
            c = mod.compare(cs, ct, ts, tt)
            out["decide"].append(str(mod.decide(c, control_error_rate=ce,
                                                 treatment_error_rate=te)))
    except Exception as e:  # noqa: BLE001 - reported to the gate as data
        first = str(e).splitlines()[0] if str(e) else ""
        out = {"error": f"{type(e).__name__}: {first}"[:400]}
    Path(argv[1]).write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
