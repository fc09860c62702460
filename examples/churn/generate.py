"""Generate a realistic synthetic customer-churn table (deterministic, standard library only).

    python examples/churn/generate.py            # writes customers.csv next to this file
    python examples/churn/generate.py --check    # exit 1 if customers.csv differs from it
    python examples/churn/generate.py --rows 500 --out /tmp/c.csv
    python examples/churn/generate.py --rows 2000000 --out /tmp/big.csv   # streamed, ~1 min

What makes it realistic: an id column, categoricals (plan, contract, payment method,
region), numbers with missing values (last login, satisfaction), numeric text with blanks
(total_spend, as in the Telco data), and a non-linear signal: month-to-month contracts,
many support calls and long inactivity raise churn; tenure lowers it; premium customers
with low satisfaction churn far more (an interaction); age has a U-shaped effect.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sys
from pathlib import Path
from typing import TextIO

SEED = 20240601
ROWS = 3000
HERE = Path(__file__).resolve().parent
COLUMNS = ["customer_id", "age", "region", "plan", "contract", "payment_method",
           "tenure_months", "monthly_fee", "total_spend", "support_calls",
           "last_login_days", "satisfaction", "churned"]


def pick(rng: random.Random, options: dict[str, float]) -> str:
    return rng.choices(list(options), weights=list(options.values()))[0]


def row(rng: random.Random, i: int) -> list[object]:
    age = min(85, max(18, int(rng.gauss(44, 14))))
    region = pick(rng, {"north": 0.3, "south": 0.25, "east": 0.25, "west": 0.2})
    plan = pick(rng, {"basic": 0.5, "standard": 0.32, "premium": 0.18})
    contract = pick(rng, {"month-to-month": 0.55, "one-year": 0.25, "two-year": 0.2})
    payment = pick(rng, {"card": 0.4, "bank transfer": 0.3, "e-check": 0.2, "invoice": 0.1})
    tenure = max(1, int(rng.expovariate(1 / 24)))
    fee = {"basic": 25.0, "standard": 55.0, "premium": 95.0}[plan] + rng.gauss(0, 6)
    calls = min(12, int(rng.expovariate(1 / 1.6)))
    login = int(rng.expovariate(1 / 9))
    satisfaction = min(10, max(1, round(rng.gauss(6.8, 1.9))))
    z = (-1.6 + 1.7 * (contract == "month-to-month") - 0.9 * (contract == "two-year")
         - 0.045 * tenure + 0.55 * max(0, calls - 2) + 0.06 * min(login, 40)
         + 2.2 * (plan == "premium" and satisfaction <= 5) - 0.25 * (satisfaction - 7)
         + 0.0012 * (age - 45) ** 2 + 0.5 * (payment == "e-check"))
    churned = "Yes" if rng.random() < 1 / (1 + math.exp(-z)) else "No"
    total = "" if tenure <= 1 and rng.random() < 0.5 else f"{fee * tenure:.2f}"
    return [f"C{i:05d}", age, region, plan, contract, payment, tenure, f"{fee:.2f}", total,
            calls, "" if rng.random() < 0.05 else login,
            "" if rng.random() < 0.04 else satisfaction, churned]


def write(out: TextIO, rows: int = ROWS, seed: int = SEED) -> None:
    """The table as CSV into `out`, row by row (2M rows need no more memory than 3,000)."""
    rng = random.Random(seed)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in range(1, rows + 1):
        writer.writerow(row(rng, i))


def generate(rows: int = ROWS, seed: int = SEED) -> str:
    buf = io.StringIO()
    write(buf, rows, seed)
    return buf.getvalue()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=HERE / "customers.csv")
    ap.add_argument("--check", action="store_true", help="verify --out equals the generator")
    args = ap.parse_args(argv)
    if args.check:
        text = generate(args.rows, args.seed)
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} differs from what generate.py produces; regenerate it with "
                  f"`python {Path(__file__).name}`", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({args.rows} rows)")
        return 0
    with args.out.open("w", encoding="utf-8", newline="") as f:
        write(f, args.rows, args.seed)
    print(f"wrote {args.out} ({args.rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
