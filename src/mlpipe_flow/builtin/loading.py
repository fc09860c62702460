"""Loading the staged data for the built-in agent, with one-line errors for bad input.

The reading itself is the workspace's own ingestion code (templates/data_ingestion), so
phase 1 fails on exactly what the pipeline would fail on later."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError

if TYPE_CHECKING:
    import pandas as pd


def load_table(task: BuiltinTask) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(the cleaned table, the `data_source` block of ml-spec.yaml)."""
    from mlpipe_flow.builtin.templates.data_ingestion import ingest
    from mlpipe_flow.data import data_url, mask_url

    d = task.data
    if not d:
        raise BuiltinUserError("no data: pass --data FILE.csv|FILE.parquet|DATABASE_URL")
    try:
        if d.get("kind") == "url":
            url = data_url(task.workspace)
            if not url:
                raise BuiltinUserError(f"--data {d.get('source')}: the database URL was not "
                                       "staged (.mlpipe/data-url is missing); run again with --data")
            engine_url, table, query = ingest.split_sql_url(url)
            raw = ingest.read_sql(url)
            source = {"kind": "url", "url": mask_url(engine_url), "table": table, "query": query,
                      "format": "sql"}
        else:
            staged = Path(d.get("staged") or "")
            path = task.workspace / staged
            try:
                raw = ingest.read_file(path)
            except ingest.DataLoadError as e:
                message = str(e).replace(str(path), f"--data {d.get('source')}", 1)
                raise BuiltinUserError(message) from None
            fmt = "parquet" if staged.suffix.lower() in (".parquet", ".pq") else "csv"
            source = {"kind": "file", "path": staged.as_posix(), "format": fmt,
                      "sha256": d.get("sha256")}
    except ingest.DataLoadError as e:
        raise BuiltinUserError(str(e)) from None
    raw.columns = [str(c) for c in raw.columns]
    return ingest.clean(raw), source
