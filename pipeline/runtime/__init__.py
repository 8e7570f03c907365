"""The Faust runtime: the worker that wires Kafka, the state table and ClickHouse to the pure core."""
