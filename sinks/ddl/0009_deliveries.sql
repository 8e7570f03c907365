-- Webhook deliveries of triggers (cxstream deliver, docs/delivery.md): one
-- row per trigger and destination, written by the worker from the
-- deliveries topic. A redelivery after a restart writes the row again with
-- a later last attempt: ReplacingMergeTree keeps the row with the highest
-- version (last_attempt_ms), so read with FINAL for one row per key.
-- Portable subset as in 0001_base.sql (ClickHouse 18.16 and chdb): no
-- DateTime64, no Nullable, no TTL, no Map.
--   status: delivered, or dead_lettered (the trigger is on the delivery
--     dead-letter topic with the same last_status and last_error)
--   last_status: the last HTTP status, 0 when the last attempt got none
--     (timeout, connection refused or reset)
--   latency_ms: first attempt to the last one's end
CREATE TABLE IF NOT EXISTS cx.deliveries
(
    tenant String,
    trigger_id String,
    destination String,
    kind String,
    action String,
    day Date,
    status String,
    attempts UInt16,
    last_status UInt16,
    last_error String,
    latency_ms UInt32,
    first_attempt_at DateTime('UTC'),
    first_attempt_ms Int64,
    last_attempt_at DateTime('UTC'),
    last_attempt_ms Int64
)
ENGINE = ReplacingMergeTree(last_attempt_ms)
PARTITION BY toYYYYMM(day)
ORDER BY (trigger_id, destination);
