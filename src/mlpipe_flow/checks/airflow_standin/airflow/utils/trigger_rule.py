"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import TriggerRule  # noqa: F401
