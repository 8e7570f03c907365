"""`cxstream up`: the embedded broker (tansu), the processes it starts and restarts, and their ports and lifetimes."""
