-- cx.event_ids: the id, fingerprint and version of every row of cx.events,
-- for the worker's lookup of stored ids (pipeline/detect/ids.py), which
-- runs for every group of records it takes.
-- Why a table of its own: ClickHouse finds a key through its sparse index
-- and reads the whole granule around it. cx.events has granules of 8192
-- rows, so each id looked up read 8192 ids (a random id is in a granule of
-- its own): on ClickHouse 18.16, 500 ids in a table of 3,000,000 rows took
-- 140 to 150 ms, against 44 to 57 ms here with granules of 256 rows
-- (docs/performance.md, "The stored-id lookup"). Four narrow columns keep
-- the smaller granules cheap; cx.events keeps its own for the analysts'
-- scans.
-- The sink writes a window's rows here after their cx.events insert
-- succeeded, never before: an id found here has its event stored. A crash
-- between the two replays the window, which writes both again (the same
-- ver: ReplacingMergeTree keeps one).
-- PARTITION BY tuple() and ORDER BY as cx.events (0008): in cluster mode
-- both are sharded by the same key, so an id's rows meet on one shard.
-- The rows stored before this migration are copied into a new table that
-- then takes the name, as in 0008: a crash during the copy leaves no
-- half-filled cx.event_ids; the next start copies again into the same new
-- table (rows copied twice have the same ver: ReplacingMergeTree keeps one),
-- and of two workers migrating at once, one renames and the other finds
-- the guard true.
-- Stop every worker of the old version before this runs: rows an old
-- worker writes after the copy have no id row, and a resend of one of
-- them would be stored a second time (the same ver: FINAL keeps one).
-- cx:done-when SELECT count() FROM system.tables WHERE database = 'cx' AND name = 'event_ids'
CREATE TABLE IF NOT EXISTS cx.event_ids_0013
(
    tenant String,
    event_id String,
    payload_hash UInt64,
    ver UInt64
)
ENGINE = ReplacingMergeTree(ver)
PARTITION BY tuple()
ORDER BY (tenant, event_id)
SETTINGS index_granularity = 256;

INSERT INTO cx.event_ids_0013 (tenant, event_id, payload_hash, ver)
SELECT tenant, event_id, payload_hash, ver FROM cx.events;

RENAME TABLE cx.event_ids_0013 TO cx.event_ids;
