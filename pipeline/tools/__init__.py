"""Tools around the pipeline: the benchmarks, the backtest, and the generator of docs/configuration.md."""
