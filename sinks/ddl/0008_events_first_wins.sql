-- cx.events: the first event accepted under a (tenant, event_id) wins.
-- Before, the table was a ReplacingMergeTree() keyed by the id, so the row
-- written LAST survived merges: an event that reused another's messageId
-- replaced it. Now:
--   payload_hash  the event's fingerprint (pipeline/detect/ids.py): what the
--                 event says, without its times; 0 for rows stored before
--                 this migration (content unknown).
--   ver           ReplacingMergeTree's version, highest for the earliest
--                 receipt: (2^42 - 1 - received_at_ms) * 2^22 plus 22 bits
--                 of the fingerprint. Merges and FINAL keep the highest, so
--                 the first row wins; a replay writes the same ver.
-- PARTITION BY tuple(): rows are collapsed only inside one partition, and
-- two events that share an id may have event times in different months;
-- with one partition every copy of an id meets every other.
-- The worker dead-letters a conflicting event before it is stored
-- (duplicate_id_conflict); ver decides only when two workers race
-- (docs/guarantees.md, "Event ids").
--
-- The engine of a table cannot be altered, so the rows are copied into a
-- new table that then takes the name (RENAME is atomic on both 18.16 and
-- 26.9; views resolve cx.events by name when they run). Copied rows keep
-- every column; their ver comes from received_at (seconds: the milliseconds
-- were not stored), so of two unmerged rows of one id the earlier wins.
-- Stop every worker of the old version before this runs: rows an old worker
-- writes to cx.events between the copy and the rename stay in
-- cx.events_0007. The old table is dropped by 0010.
-- cx:done-when SELECT count() FROM system.columns WHERE database = 'cx' AND table = 'events' AND name = 'ver'
CREATE TABLE IF NOT EXISTS cx.events_0008
(
    tenant String,
    event_id String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    received_at DateTime('UTC'),
    type String,
    event String,
    anonymous_id String,
    user_id String,
    session_id String,
    cart_key String,
    order_id String,
    checkout_id String,
    product_id String,
    revenue Float64,
    currency String,
    page_path String,
    properties String,
    email_hash String,
    ip_hash String,
    context String DEFAULT '{}',
    payload_hash UInt64,
    ver UInt64
)
ENGINE = ReplacingMergeTree(ver)
PARTITION BY tuple()
ORDER BY (tenant, event_id);

INSERT INTO cx.events_0008
    (tenant, event_id, day, event_time, event_time_ms, received_at, type, event, anonymous_id, user_id,
     session_id, cart_key, order_id, checkout_id, product_id, revenue, currency, page_path, properties,
     email_hash, ip_hash, context, payload_hash, ver)
SELECT
    tenant, event_id, day, event_time, event_time_ms, received_at, type, event, anonymous_id, user_id,
    session_id, cart_key, order_id, checkout_id, product_id, revenue, currency, page_path, properties,
    email_hash, ip_hash, context, toUInt64(0),
    toUInt64(toUInt64(4398046511103) - toUInt64(received_at) * 1000) * toUInt64(4194304)
FROM cx.events;

RENAME TABLE cx.events TO cx.events_0007, cx.events_0008 TO cx.events;
