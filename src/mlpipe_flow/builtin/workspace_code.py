"""Running the code the built-in agent copied into the workspace, in this process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

PACKAGES = ("data_ingestion", "data_quality", "feature_engineering", "models", "interpretability")


def load(workspace: Path, module: str) -> ModuleType:
    """Import `module` from the workspace (never a stale copy from another workspace)."""
    root = str(workspace.resolve())
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    for name in list(sys.modules):
        if name.split(".")[0] in PACKAGES:
            mod = sys.modules[name]
            if not str(getattr(mod, "__file__", "") or "").startswith(root):
                del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module(module)
