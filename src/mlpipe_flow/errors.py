"""One exception family. The CLI prints any of these in one line and exits with `exit_code`."""

from __future__ import annotations


class MlpipeError(Exception):
    """Base of every error mlpipe expects; anything else is a bug and shows its traceback."""

    exit_code = 2


class ConfigError(MlpipeError):
    """A workflow, config file or template is wrong: names the file, the field and the fix."""


class UsageError(MlpipeError):
    """The command line asks for something that cannot be done as asked."""


class DataError(MlpipeError):
    """The data given with --data cannot be used."""


class StateError(MlpipeError):
    """The workspace's .mlpipe/ records are unreadable, or another run holds the workspace."""


class RunnerError(MlpipeError):
    """A runner cannot start (its CLI is missing, its key is not set)."""


class RunFailed(MlpipeError):
    """A phase did not pass its gate within its attempts, or a gate failed."""

    exit_code = 1
