"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import Param  # noqa: F401
