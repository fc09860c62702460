"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import chain, cross_downstream  # noqa: F401
