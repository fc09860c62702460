"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import BaseOperator, chain, cross_downstream  # noqa: F401
