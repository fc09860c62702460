"""mlpipe: build a production ML pipeline phase by phase, admitted only by executable gates."""

__version__ = "0.1.0"
