"""Data the tests need, made by code: tables shaped like the public Telco churn and concrete
strength datasets (same column names, types and quirks), so the suite runs on a fresh clone
with nothing beside it. The real files in ../shared/datasets, where present, are extra
coverage (the tests marked `shared_data`, and the concrete run in test_builtin_agent.py).

Deterministic (a seed per table), standard library only.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
CONCRETE_TARGET = "Concrete compressive strength(MPa, megapascals) "
TELCO_COLUMNS = ["customerID", "gender", "SeniorCitizen", "Partner", "Dependents", "tenure",
                 "PhoneService", "MultipleLines", "InternetService", "OnlineSecurity",
                 "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV",
                 "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod",
                 "MonthlyCharges", "TotalCharges", "Churn"]
CONCRETE_COLUMNS = ["Cement (component 1)(kg in a m^3 mixture)",
                    "Blast Furnace Slag (component 2)(kg in a m^3 mixture)",
                    "Fly Ash (component 3)(kg in a m^3 mixture)",
                    "Water  (component 4)(kg in a m^3 mixture)",
                    "Superplasticizer (component 5)(kg in a m^3 mixture)",
                    "Coarse Aggregate  (component 6)(kg in a m^3 mixture)",
                    "Fine Aggregate (component 7)(kg in a m^3 mixture)",
                    "Age (day)", CONCRETE_TARGET]


def telco_like(path: Path, rows: int = 3000, seed: int = 11) -> Path:
    """Telco churn's 21 columns: an id (`7590-VHVEG`), 16 categorical columns, `SeniorCitizen`
    as 0/1, `tenure`, `MonthlyCharges`, `TotalCharges` as numeric text that is blank (" ") for
    new customers, and `Churn` Yes/No (about a quarter Yes) driven by contract, tenure,
    charges, fibre and support, with noise."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        senior = int(rng.random() < 0.16)
        partner = rng.choice(["Yes", "No"])
        dependents = "Yes" if partner == "Yes" and rng.random() < 0.6 else "No"
        contract = rng.choices(["Month-to-month", "One year", "Two year"], [0.55, 0.21, 0.24])[0]
        base_tenure = {"Month-to-month": 18, "One year": 42, "Two year": 57}[contract]
        # new customers (tenure 0, TotalCharges blank) are rare, as in the real table (11 of 7043)
        tenure = 0 if rng.random() < 0.0016 else max(1, min(72, int(rng.gauss(base_tenure, 16))))
        phone = "Yes" if rng.random() < 0.9 else "No"
        lines = ("No phone service" if phone == "No" else rng.choice(["Yes", "No"]))
        internet = rng.choices(["DSL", "Fiber optic", "No"], [0.34, 0.44, 0.22])[0]

        security, backup, protection, support, tv, movies = (
            "No internet service" if internet == "No" else rng.choice(["Yes", "No"])
            for _ in range(6))
        paperless = "Yes" if rng.random() < 0.59 else "No"
        payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer (automatic)",
                              "Credit card (automatic)"])
        monthly = (20.0 + (25 if internet == "DSL" else 50 if internet == "Fiber optic" else 0)
                   + 5 * sum(x == "Yes" for x in (security, backup, protection, support, tv,
                                                   movies)) + (5 if lines == "Yes" else 0))
        monthly = round(max(18.25, monthly + rng.gauss(0, 3)), 2)
        total = " " if tenure == 0 else f"{round(monthly * tenure * rng.uniform(0.95, 1.05), 2)}"
        logit = (-1.2 + {"Month-to-month": 1.1, "One year": -0.6, "Two year": -1.8}[contract]
                 - 0.035 * tenure + (0.6 if internet == "Fiber optic" else 0)
                 + (0.4 if payment == "Electronic check" else 0) + (0.3 if senior else 0)
                 - (0.4 if support == "Yes" else 0) + 0.01 * (monthly - 65) + rng.gauss(0, 0.6))
        churn = "Yes" if rng.random() < 1 / (1 + math.exp(-logit)) else "No"
        cid = f"{rng.randint(1000, 9999)}-{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ', k=5))}"
        out.append([f"{cid}{i}" if i % 997 == 0 else cid, rng.choice(["Female", "Male"]), senior,
                    partner, dependents, tenure, phone, lines, internet, security, backup,
                    protection, support, tv, movies, contract, paperless, payment,
                    f"{monthly}", total, churn])
    seen: set[str] = set()
    for row in out:  # ids are unique, as in the real table
        while row[0] in seen:
            row[0] = f"{row[0][:4]}-{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ', k=5))}"
        seen.add(row[0])
    return _write(path, TELCO_COLUMNS, out)


def concrete_like(path: Path, rows: int = 772, seed: int = 12) -> Path:
    """The concrete strength table's 9 numeric columns, long names with spaces, parentheses
    and commas (the target ends with a space); strength follows Abrams' law in the
    water/cement ratio, a logarithmic age effect, slag and fly ash, with noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        cement = round(rng.uniform(102, 540), 1)
        slag = round(rng.choice([0.0, rng.uniform(0, 360)]), 1)
        ash = round(rng.choice([0.0, 0.0, rng.uniform(0, 200)]), 1)
        water = round(rng.uniform(121, 247), 1)
        superp = round(rng.choice([0.0, rng.uniform(1, 32)]), 1)
        coarse = round(rng.uniform(801, 1145), 1)
        fine = round(rng.uniform(594, 993), 1)
        age = rng.choice([3, 7, 14, 28, 28, 28, 56, 90, 180, 365])
        binder = cement + 0.6 * slag + 0.3 * ash
        strength = (96 / (3.2 ** (water / binder)) * (0.45 + 0.2 * math.log(age))
                    + 0.25 * superp + rng.gauss(0, 4.0))
        out.append([cement, slag, ash, water, superp, coarse, fine, age,
                    round(max(2.3, min(82.6, strength)), 6)])
    return _write(path, CONCRETE_COLUMNS, out)


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)  # whole or not at all: test sessions may generate it at once
    return path


GENERATORS = {"telco_churn.csv": telco_like, "concrete_strength.csv": concrete_like}
# keyed by this file's content: a changed generator never reuses an older table
_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(tempfile.gettempdir()) / f"mlpipe-test-data-{os.getuid()}-{_VERSION}"


def data_file(name: str) -> Path:
    """The generated stand-in for ../shared/datasets/<name> (made once per machine)."""
    dest = CACHE / name
    if not dest.is_file():
        GENERATORS[name](dest)
    return dest


def real_file(name: str) -> Path:
    """../shared/datasets/<name>; the caller skips when it is absent (`shared_data`)."""
    return SHARED / name
