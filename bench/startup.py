"""Start-up time of `mlpipe --help` against a one-command typer app in the same environment.

Prints the median wall time of each over N runs and their ratio (target: at most 1.5).
Usage: python bench/startup.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    print(name)


app()
'''


def median_wall(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "baseline.py"
        base.write_text(BASELINE)
        # warm the file cache for both before timing
        median_wall([sys.executable, str(base), "--help"], 2)
        median_wall([sys.executable, "-m", "mlpipe_flow", "--help"], 2)
        plain = Path(d) / "baseline_plain.py"
        plain.write_text(BASELINE.replace("typer.Typer()", "typer.Typer(rich_markup_mode=None)"))
        t_base = median_wall([sys.executable, str(base), "--help"], n)
        t_plain = median_wall([sys.executable, str(plain), "--help"], n)
        t_help = median_wall([sys.executable, "-m", "mlpipe_flow", "--help"], n)
        t_phases = median_wall([sys.executable, "-m", "mlpipe_flow", "phases"], n)
    print(f"one-command typer app --help : {t_base * 1000:7.1f} ms (median of {n})")
    print(f"  same, plain help (no rich) : {t_plain * 1000:7.1f} ms")
    print(f"mlpipe --help                : {t_help * 1000:7.1f} ms  ratio {t_help / t_base:.2f}"
          f" (target <= 1.5); {t_help / t_plain:.2f} against the plain-help app")
    print(f"mlpipe phases                : {t_phases * 1000:7.1f} ms  ratio {t_phases / t_base:.2f}")


if __name__ == "__main__":
    main()
