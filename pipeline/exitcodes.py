"""Exit codes of cxstream processes that their supervisor acts on."""

EXIT_UNFINISHED_BATCH = 75  # EX_TEMPFAIL: a batch did not complete; start the worker again, it replays the batch
EXIT_GAVE_UP = 70  # EX_SOFTWARE: `cxstream up` stopped: a component failed more restarts in a row than CX_RESTART_BUDGET
EXIT_DATA_DIR_IN_USE = 73  # EX_CANTCREAT: another `cxstream up` runs on this data dir; nothing was started
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: no Kafka broker answered at start; `cxstream up` starts the process again
