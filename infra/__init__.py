"""Development and test infrastructure: a ClickHouse server (and cluster) for the tests and the benchmarks (``pipeline.tools``); the pipeline itself never imports it."""
