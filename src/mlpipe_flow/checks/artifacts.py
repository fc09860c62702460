"""Running what the agent made, from a check: its saved model through `model_probe.py` in a
child process of the workspace's interpreter, with the workspace on the path (a pickle may
name the workspace's own modules), secrets scrubbed, its own process group and a time limit.
Rows go in as CSV files without labels; raw outputs come back as JSON."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext

PROBE = Path(__file__).with_name("model_probe.py")


class ProbeError(Exception):
    """The model could not be loaded or run (the message says why)."""


def feature_types(frame: Any, features: list[str]) -> dict[str, str]:
    """'number' for the columns pandas reads as numbers, else 'text'."""
    return {c: ("number" if frame[c].dtype.kind in "biuf" else "text") for c in features}


def run_model(ctx: CheckContext, model: str, features: list[str], dtypes: dict[str, str],
              ops: list[dict[str, Any]], timeout_s: float | None = None,
              deadline_s: float | None = None) -> dict[str, Any]:
    """Run `ops` (model_probe operations; a "frame" entry is written to a CSV for it, a
    "fit_frame" entry — features and the op's "label" column — to the CSV a clone is fitted on)
    against the workspace's model; returns the probe's response or raises ProbeError.
    `deadline_s`: after this many seconds the probe skips optional work (more CV repeats)."""
    with tempfile.TemporaryDirectory(prefix="mlpipe-probe-", dir=ctx.scratch) as tmp:
        folder = Path(tmp)
        wire = []
        for i, op in enumerate(ops):
            op = dict(op)
            frame = op.pop("frame", None)
            if frame is not None:
                rows = folder / f"rows-{i}.csv"
                frame[[c for c in features if c in frame.columns]].to_csv(rows, index=False)
                op["rows"] = str(rows)
            fit_frame = op.pop("fit_frame", None)
            if fit_frame is not None:
                fit_rows = folder / f"fit-{i}.csv"
                cols = [c for c in features if c in fit_frame.columns] + [op["label"]]
                fit_frame[cols].to_csv(fit_rows, index=False)
                op["fit_rows"] = str(fit_rows)
            wire.append(op)
        req, resp = folder / "request.json", folder / "response.json"
        request: dict[str, Any] = {"model": str(ctx.workspace / model), "features": features,
                                   "dtypes": dtypes, "ops": wire}
        if deadline_s:
            request["deadline_s"] = deadline_s
        req.write_text(json.dumps(request), encoding="utf-8")
        env = proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(ctx.workspace),
                                       "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "2"})
        res = proc.run([ctx.python, str(PROBE), str(req), str(resp)], cwd=ctx.workspace,
                       env=env, timeout_s=timeout_s or ctx.timeout_s)
        try:
            out: dict[str, Any] = json.loads(resp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = [ln for ln in res.output.splitlines() if ln.strip()][-3:]
            raise ProbeError(f"running {model} failed ({res.describe()}): "
                             f"{' | '.join(tail)[:300]}") from None
    if "error" in out:
        raise ProbeError(f"running {model} failed: {out['error']}")
    return out
