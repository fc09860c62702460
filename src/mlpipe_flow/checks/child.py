"""One check in a process of its own: `gate.run_check` starts this with the check's kind,
params and context in a JSON file and reads its `CheckResult` back from another.

    python -c <boot> PAYLOAD.json RESULT.json

The parent kills the whole process group when the check's time limit passes; SIGTERM
becomes SystemExit here, so the check's own `finally` blocks (an API it started, a scratch
copy) run before the process ends, and anything left is killed with the process group or by
PR_SET_PDEATHSIG. Checks run on this process's main thread only.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    from mlpipe_flow.proc import die_with_parent

    die_with_parent()  # the gate starts checks from worker threads: no preexec_fn there
    signal.signal(signal.SIGTERM, _terminate)
    payload_path, result_path = Path(argv[0]), Path(argv[1])
    payload = json.loads(payload_path.read_text(encoding="utf-8"))

    from mlpipe_flow.checks import CHECKS, CheckContext
    from mlpipe_flow.errors import MlpipeError
    from mlpipe_flow.models import CheckResult

    kind = CHECKS[payload["kind"]]
    ctx = CheckContext.from_payload(payload["ctx"])
    try:
        params = kind.params.model_validate(payload["params"])
        res = kind.run(ctx, params)
    except MlpipeError as e:
        res = CheckResult(id="", status="error", message=str(e))
    except Exception as e:  # noqa: BLE001 - a crashing check is an error result, not a crash
        first = str(e).splitlines()[0] if str(e) else ""
        res = CheckResult(id="", status="error", message=f"check crashed: {type(e).__name__}: {first}")
    result_path.write_text(res.model_dump_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
