"""Start and stop the real components cxstream runs on: Kafka and ClickHouse."""
