"""Measure the worker's stored-id lookup (``sinks.sink.stored_fingerprints``) on a large table.

    python -m pipeline.tools.lookup_bench                          # chdb in a temp dir + a local test server
    python -m pipeline.tools.lookup_bench --rows 3000000 --ids 20,500 clickhouse://default:@host:9000/default

``--rows`` random ids (UUIDs, as storefront SDKs make them) are stored in
``cx.event_ids`` twice: once with its own granules of 256 rows, once in a
copy with the 8192-row granules of ``cx.events`` (which the lookup read
before ``sinks/ddl/0013_event_ids.sql``), and their hashes in
``cx.event_id_set`` (0015). Each table is merged to one part, then asked
for groups of ``--ids`` ids of which 5 are stored, ``--repeat`` times,
through ``stored_fingerprints`` itself, in three layouts: the set probed
first (the lookup now), ``cx.event_ids`` alone (0013 to 0014) and the
old granules alone (the copy takes the table's name while it is
measured). Every answer is checked: exactly the 5 stored ids, none of the
others. The target database ``cx`` is dropped first: point it at a scratch
server only.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack

from sinks.client import ClickHouse, connect
from sinks.migrate import migrate
from sinks.sink import EVENT_ID_COLUMNS, EVENT_ID_SET, EVENT_IDS_TABLE, id_hash, stored_fingerprints

__all__ = ["LAYOUTS", "measure"]

TENANT = "shop-a"
STORED_PER_GROUP = 5
LOAD_BATCH = 100_000
OLD_LAYOUT = "cx.event_ids_granules_8192"
# (label, the table measured as cx.event_ids, whether the set is probed first)
LAYOUTS = (
    ("the id set, then granules of 256 (cx.event_id_set, cx.event_ids)", None, True),
    ("granules of 256 alone (cx.event_ids, 0013)", None, False),
    ("granules of 8192 alone (cx.events before 0013)", OLD_LAYOUT, False),
)


def _load(ch: ClickHouse, rows: int, seed: int) -> list[str]:
    """Store ``rows`` random ids in both tables and their hashes in the set; return a sample of them to ask for."""
    ch.execute("DROP DATABASE IF EXISTS cx")
    migrate(ch)
    ch.execute(
        f"CREATE TABLE {OLD_LAYOUT} (tenant String, event_id String, payload_hash UInt64, ver UInt64)"
        " ENGINE = ReplacingMergeTree(ver) PARTITION BY tuple() ORDER BY (tenant, event_id)"
        " SETTINGS index_granularity = 8192"
    )
    rng = random.Random(seed)
    sample: list[str] = []
    left = rows
    while left:
        n = min(LOAD_BATCH, left)
        batch = [(TENANT, str(uuid.UUID(int=rng.getrandbits(128), version=4)), 1, 1) for _ in range(n)]
        for table in (EVENT_IDS_TABLE, OLD_LAYOUT):
            ch.insert(table, list(EVENT_ID_COLUMNS), batch)
        ch.insert(EVENT_ID_SET, ["h"], [(id_hash(t, e),) for t, e, _, _ in batch])
        sample += [row[1] for row in batch[:: max(1, n // 200)]]
        left -= n
    for table in (EVENT_IDS_TABLE, OLD_LAYOUT):
        ch.execute(f"OPTIMIZE TABLE {table} FINAL")
    return sample


def _ask(ch: ClickHouse, ids: int, repeat: int, sample: list[str], rng: random.Random, id_set: bool) -> list[float]:
    times = []
    for _ in range(repeat):
        stored = rng.sample(sample, STORED_PER_GROUP)
        asked = stored + [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ids - STORED_PER_GROUP)]
        started = time.perf_counter()
        found = stored_fingerprints(ch, {TENANT: asked}, id_set=id_set)
        times.append((time.perf_counter() - started) * 1000)
        if set(found) != {(TENANT, e) for e in stored}:
            raise AssertionError(f"the lookup found {len(found)} ids, {STORED_PER_GROUP} are stored")
    return times


def measure(ch: ClickHouse, rows: int, id_counts: list[int], repeat: int, seed: int = 7) -> list[dict]:
    """One result per layout and group size: median and max ms, with the exact counts behind them."""
    sample = _load(ch, rows, seed)
    stored = {t: ch.execute(f"SELECT count() FROM {t}")[0][0] for t in (EVENT_IDS_TABLE, OLD_LAYOUT)}
    results = []
    rng = random.Random(seed + 1)
    for label, table, id_set in LAYOUTS:
        if table is not None:
            ch.execute(f"RENAME TABLE {EVENT_IDS_TABLE} TO cx.event_ids_measured, {table} TO {EVENT_IDS_TABLE}")
        try:
            for ids in id_counts:
                _ask(ch, ids, 2, sample, rng, id_set)  # warm the marks cache, as a running worker has it
                times = _ask(ch, ids, repeat, sample, rng, id_set)
                results.append(
                    {
                        "layout": label,
                        "rows": stored[table or EVENT_IDS_TABLE],
                        "ids": ids,
                        "lookups": repeat,
                        "median_ms": statistics.median(times),
                        "max_ms": max(times),
                    }
                )
        finally:
            if table is not None:
                ch.execute(f"RENAME TABLE {EVENT_IDS_TABLE} TO {table}, cx.event_ids_measured TO {EVENT_IDS_TABLE}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("urls", nargs="*", help="ClickHouse URLs (default: chdb in a temp dir and a local test server)")
    parser.add_argument("--rows", type=int, default=3_000_000, help="ids stored in each layout")
    parser.add_argument("--ids", default="20,500", help="ids per lookup, comma-separated")
    parser.add_argument("--repeat", type=int, default=15, help="lookups per group size and layout")
    args = parser.parse_args()
    id_counts = [int(n) for n in args.ids.split(",") if n.strip()]
    if any(n <= STORED_PER_GROUP for n in id_counts) or args.rows < 1000:
        parser.error(f"--ids must each exceed {STORED_PER_GROUP} and --rows be at least 1000")
    with ExitStack() as stack:
        urls = list(args.urls)
        if not urls:
            urls.append(f"chdb://{stack.enter_context(tempfile.TemporaryDirectory(prefix='cx-lookup-'))}/chdb")
            from infra.clickhouse_server import ClickHouseServer, server_command

            try:
                server_command()
            except (FileNotFoundError, RuntimeError) as exc:
                print(f"no local clickhouse-server, measuring chdb only: {exc}")
            else:
                urls.append(stack.enter_context(ClickHouseServer()).start().url)
        for url in urls:
            ch = connect(url)
            try:
                version = ".".join(map(str, ch.server_version()[:2]))
                for r in measure(ch, args.rows, id_counts, args.repeat):
                    print(
                        f"{url.split('://')[0]} {version:>5}  {r['layout']:<66} {r['rows']:>11,} rows stored"
                        f"  {r['ids']:>5} ids per lookup, {r['lookups']} lookups"
                        f"  median {r['median_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms"
                    )
            finally:
                ch.close()


if __name__ == "__main__":
    main()
