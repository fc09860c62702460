"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
