"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import DummyOperator, EmptyOperator  # noqa: F401
