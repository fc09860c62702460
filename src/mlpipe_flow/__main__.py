from mlpipe_flow.cli import main

main()
