"""mlpipe stand-in of Airflow (see airflow/_standin.py)."""
from airflow._standin import (  # noqa: F401
    DAG,
    Asset,
    BaseOperator,
    Label,
    Param,
    TaskGroup,
    Variable,
    chain,
    cross_downstream,
    dag,
    get_current_context,
    task,
    task_group,
)
