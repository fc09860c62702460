"""mlpipe stand-in of pendulum, for DAG files parsed without Airflow (a real pendulum wins)."""

import datetime as _dt

UTC = _dt.timezone.utc


def timezone(name="UTC"):
    return UTC


def datetime(year, month=1, day=1, hour=0, minute=0, second=0, microsecond=0, tz=UTC, **_k):
    return _dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def duration(**kwargs):
    return _dt.timedelta(**kwargs)


def now(tz=UTC):
    return _dt.datetime.now(UTC)


def today(tz=UTC):
    return now().replace(hour=0, minute=0, second=0, microsecond=0)


def parse(text, **_k):
    return _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
