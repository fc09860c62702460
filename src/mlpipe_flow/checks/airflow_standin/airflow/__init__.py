"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import DAG, Asset, Dataset  # noqa: F401

__version__ = "0+mlpipe.standin"
