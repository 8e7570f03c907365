"""Exit codes of cxstream processes that their supervisor acts on."""

EXIT_UNFINISHED_BATCH = 75  # EX_TEMPFAIL: a batch did not complete; start the worker again, it replays the batch
