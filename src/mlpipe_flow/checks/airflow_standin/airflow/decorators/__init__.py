"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import dag, task, task_group  # noqa: F401
