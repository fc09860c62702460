"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import AirflowException, AirflowFailException, AirflowSkipException  # noqa: F401
