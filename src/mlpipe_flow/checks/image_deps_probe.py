"""Which installed distributions an image's `pip install` lines bring in, and which the API
needs: run by path in the workspace's interpreter (its installed packages are the reference),
imports nothing of mlpipe.

    python image_deps_probe.py REQUEST.json RESPONSE.json

Request: {"requirements": ["fastapi==0.110", "uvicorn[standard]", ...],
          "imports": ["fastapi", "numpy", ...], "model": "/path/model.joblib" | null,
          "features": [...], "dtypes": {...}, "ops": [model_probe operations]}
Response: {"closure": [normalised distribution names the requirements pull in, transitively],
           "unknown": [requirements not installed here, so their dependencies are unknown],
           "imports": {module: [distributions providing it]} (the API's and the model's),
           "model_modules": [top-level packages of the classes the model's pickle names],
           "versions": {distribution of such a package: its installed version},
           "classes": [...], "results": [model_probe results of "ops" on the same model]}
The model is loaded once, for both; "ops" run through model_probe.py's own functions (beside
this file), so rows are read exactly as every other check reads them.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_req(spec: str) -> tuple[str, set[str], str]:
    """(name, extras, marker) of a requirement line."""
    try:
        from packaging.requirements import Requirement

        r = Requirement(spec)
        return r.name, set(r.extras), str(r.marker) if r.marker else ""
    except Exception:  # noqa: BLE001 - packaging missing or an odd line: a plain reading
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
        if not m:
            return "", set(), ""
        extras = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
        marker = spec.split(";", 1)[1] if ";" in spec else ""
        return m.group(1), extras, marker


def marker_ok(marker: str, extras: set[str]) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker

        m = Marker(marker)
        if "extra" in marker:
            return any(m.evaluate({"extra": e}) for e in extras) if extras else False
        return bool(m.evaluate())
    except Exception:  # noqa: BLE001 - unreadable marker: count the dependency in
        return "extra" not in marker


def closure(requirements: list[str]) -> tuple[set[str], list[str]]:
    seen: set[str] = set()
    unknown: list[str] = []
    todo = [parse_req(r)[:2] for r in requirements]
    while todo:
        name, extras = todo.pop()
        if not name:
            continue
        key = norm(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if key not in seen:
                unknown.append(name)
            seen.add(key)
            continue
        if key in seen and not extras:
            continue
        seen.add(key)
        for dep in dist.requires or []:
            dname, dextras, marker = parse_req(dep)
            if marker_ok(marker, extras) and (norm(dname) not in seen or dextras):
                todo.append((dname, dextras))
    return seen, unknown


def load_model(path: str | None) -> tuple[Any, list[str]]:
    """The model, and the top-level packages of every class its pickle names (its GLOBALs)."""
    if not path:
        return None, []
    import joblib
    from joblib import numpy_pickle

    found: set[str] = set()
    unpickler = numpy_pickle.NumpyUnpickler
    original = unpickler.find_class

    def find_class(self: Any, module: str, name: str) -> Any:
        found.add(module.split(".")[0])
        return original(self, module, name)

    unpickler.find_class = find_class  # type: ignore[method-assign]
    try:
        model = joblib.load(path)
    finally:
        unpickler.find_class = original  # type: ignore[method-assign]
    return model, sorted(found)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    try:
        found, unknown = closure(list(req.get("requirements") or []))
        provided = metadata.packages_distributions()
        model, from_model = load_model(req.get("model"))
        wanted = set(req.get("imports") or []) | set(from_model)
        dists = {m: sorted({norm(d) for d in provided.get(m, [])}) for m in wanted}
        out = {"closure": sorted(found), "unknown": unknown, "imports": dists,
               "model_modules": from_model,
               "versions": {d: _version(d) for m in from_model for d in dists.get(m, [])}}
        if model is not None and req.get("ops"):
            sys.path.insert(0, str(Path(__file__).parent))
            import model_probe

            classes = getattr(model, "classes_", None)
            out["classes"] = model_probe.jsonable(classes) if classes is not None else None
            out["results"] = [model_probe.OPS[op["op"]](model, req, op) for op in req["ops"]]
    except Exception as e:  # noqa: BLE001 - reported as data
        out = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]}
    Path(argv[1]).write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
