-- cx.event_id_set: a hash of every (tenant, event_id) of cx.event_ids, held
-- in the server's memory (engine Set), so that the worker's lookup of a
-- group's ids (sinks/sink.py, stored_fingerprints) asks cx.event_ids only
-- for the ids whose hash is here, nearly always none. On ClickHouse 18.16
-- the lookup read about 0.08 ms of granules per id looked up, and nearly
-- every id is new (docs/performance.md, "The stored-id lookup"); a hash
-- probe costs microseconds.
-- The hash: cityHash64 of tenant, 0x1F, event_id (sinks.sink.id_hash
-- computes the same in Python, with clickhouse-cityhash). Two ids with one hash
-- only cost a look at cx.event_ids; an id stored there must have its hash
-- here, so the sink writes a window's hashes before its cx.event_ids rows.
-- Memory: a Set keeps every hash in RAM, read back at each server start (about 16
-- bytes per id with its hash table; docs/clickhouse.md).
-- One server only: on a cluster cx.event_ids is sharded and the lookup
-- goes to the shards as before (a Set is not replicated).
-- Copied into a new table that then takes the name, as 0013: a crash during
-- the copy leaves no half-filled cx.event_id_set, and of two workers
-- migrating at once, one renames and the other finds the guard true.
-- cx:single-server
-- cx:done-when SELECT count() FROM system.tables WHERE database = 'cx' AND name = 'event_id_set'
CREATE TABLE IF NOT EXISTS cx.event_id_set_0015 (h UInt64) ENGINE = Set;

INSERT INTO cx.event_id_set_0015 (h)
SELECT cityHash64(concat(tenant, '\x1F', event_id)) FROM cx.event_ids;

RENAME TABLE cx.event_id_set_0015 TO cx.event_id_set;
