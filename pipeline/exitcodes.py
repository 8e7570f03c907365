"""Exit codes of cxstream processes that their supervisor acts on."""

EXIT_UNFINISHED_BATCH = 75  # EX_TEMPFAIL: a batch did not complete; start the worker again, it replays the batch
EXIT_GAVE_UP = 70  # EX_SOFTWARE: `cxstream up` stopped: a component failed more restarts in a row than CX_RESTART_BUDGET
EXIT_DATA_DIR_IN_USE = 73  # EX_CANTCREAT: another `cxstream up` runs on this data dir; nothing was started
EXIT_PORT_TAKEN = 78  # EX_CONFIG: `cxstream up` or `demo`: another process listens on a port a child needs; nothing left running
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: no Kafka broker answered at start; `cxstream up` starts the process again
EXIT_NOT_READY = 3  # `cxstream status`: a component is not alive or not ready (the screen says which check fails)
