"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import (  # noqa: F401
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
    get_current_context,
)
