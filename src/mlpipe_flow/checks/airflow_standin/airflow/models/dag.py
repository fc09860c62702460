"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import DAG  # noqa: F401
