"""Runs the workspace's saved model for a check, in a child process of the workspace's own
interpreter: unpickling a model runs its code, so it never happens inside mlpipe.

    python model_probe.py REQUEST.json RESPONSE.json

The request names the model and the operations; every operation reads its rows from a CSV
the gate wrote (feature columns only: the labels never reach this process). The response
holds raw outputs — labels, class probabilities, numbers — and the check computes every
score from them itself. This file is run by path and imports nothing of mlpipe: the
workspace's interpreter need not have mlpipe installed.

Operations:
  {"op": "predict", "rows": CSV, "proba": bool}  -> {"predictions": [...], "probabilities": [[...]]}
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any


def read_rows(path: str, features: list[str], dtypes: dict[str, str]) -> Any:
    """The rows as the model was trained on them: read like the splits are read (pandas
    defaults), numeric columns as floats, the others as text with missing values as NaN."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(path, low_memory=False, keep_default_na=True)
    for col in features:
        if col not in frame.columns:
            frame[col] = np.nan
        if dtypes.get(col) == "number":
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    return frame[features]


def jsonable(values: Any) -> list[Any]:
    import numpy as np

    out: list[Any] = []
    for v in np.asarray(values, dtype=object).tolist():
        if isinstance(v, float) and v != v:  # NaN
            out.append(None)
        elif hasattr(v, "item"):
            out.append(v.item())
        else:
            out.append(v)
    return out


def op_predict(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    frame = read_rows(op["rows"], req["features"], req.get("dtypes") or {})
    out: dict[str, Any] = {"rows": int(len(frame))}
    out["predictions"] = jsonable(model.predict(frame))
    if op.get("proba") and hasattr(model, "predict_proba"):
        out["probabilities"] = np.asarray(model.predict_proba(frame), dtype=float).tolist()
    return out


OPS = {"predict": op_predict}


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    response: dict[str, Any] = {}
    try:
        import joblib

        model = joblib.load(req["model"])
        classes = getattr(model, "classes_", None)
        response["model_type"] = type(model).__name__
        response["classes"] = jsonable(classes) if classes is not None else None
        response["results"] = [OPS[op["op"]](model, req, op) for op in req["ops"]]
    except Exception as e:  # noqa: BLE001 - reported to the gate as data, not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        response = {"error": f"{type(e).__name__}: {first}"[:500]}
    Path(argv[1]).write_text(json.dumps(response), encoding="utf-8")
    return 0 if "error" not in response else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
