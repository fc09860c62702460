"""Part of the ML pipeline written by mlpipe's built-in agent; parameterised by ml-spec.yaml."""
