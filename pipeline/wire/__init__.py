"""The formats on Kafka: EventBatch records and dead letters, triggers, topic names and settings, the partition of a key."""
