"""Code the built-in agent copies into the workspace as is (real, lintable Python)."""
