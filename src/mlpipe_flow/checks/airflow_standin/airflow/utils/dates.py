"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import days_ago  # noqa: F401
