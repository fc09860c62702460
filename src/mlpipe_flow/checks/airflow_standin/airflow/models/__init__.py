"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import DAG, BaseOperator, Param, Variable  # noqa: F401
