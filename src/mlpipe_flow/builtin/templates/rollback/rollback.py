"""Roll the served model back to the previous champion (or --to VERSION).

    python rollback/rollback.py [--to VERSION]

Moves the MLflow Model Registry alias `champion` back to the version the current champion
replaced (its `previous_champion` tag), then exports that version to registry/ (the files the
API loads and the image ships; registry/champion.json is replaced atomically). Restart (or
roll) the API pods so they load it: `kubectl rollout restart deployment/model-api -n
production`; verify with `curl .../health` (model_version). Exit status 0 on success, 1 when
there is nothing to roll back to.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from continuous_training import registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="roll the champion model back")
    ap.add_argument("--to", help="a registered version (default: the previous champion)")
    args = ap.parse_args(argv)
    try:
        registry.ensure_initialised()
        old, new = registry.rollback(args.to)
    except (RuntimeError, KeyError) as e:
        print(f"rollback: {e}", file=sys.stderr)
        return 1
    registry.record_decision({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "decision": "rollback", "from": old, "to": new})
    print(json.dumps({"rolled_back_from": old, "champion": new,
                      "served": (registry.champion() or {}).get("model_uri")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
