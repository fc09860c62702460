"""`python -m mlpipe_flow.runners.anthropic_agent TASK_FILE`: the anthropic runner's child."""

import sys

from mlpipe_flow.runners.anthropic_loop import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
