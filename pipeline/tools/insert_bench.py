"""Measure insert throughput into ``cx.events`` on each backend.

    python -m pipeline.tools.insert_bench                      # chdb in a temp dir + a local test server
    python -m pipeline.tools.insert_bench --rows 200000 --batch 10000 clickhouse://default:@host:9000/default

Rows are built once (``event_row`` on synthetic events), then inserted in
batches of ``--batch`` rows, one ``insert`` per batch as the sink does; the
rate counts insert time only. The target database ``cx`` is dropped first:
point it at a scratch server only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack

from sinks.client import ClickHouse, connect
from sinks.migrate import migrate
from sinks.rows import EVENT_COLUMNS, event_row

__all__ = ["synthetic_rows", "measure"]

T0_MS = 1_710_000_000_000  # 2024-03-09 16:00 UTC


def synthetic_rows(n: int) -> list[tuple]:
    """``n`` event rows shaped like storefront traffic (mostly product views, some carts and orders)."""
    rows = []
    for i in range(n):
        kind = ("Product Viewed", "Product Viewed", "Product Added", "Order Completed")[i % 4]
        props = {"product_id": f"p-{i % 500}", "price": 19.9, "name": "Linen shirt", "currency": "EUR"}
        if kind == "Order Completed":
            props = {"order_id": f"o-{i}", "total": 59.7, "currency": "EUR", "products": [{"product_id": "p-1"}]}
        t = T0_MS + i * 37
        rows.append(
            event_row(
                {
                    "event_id": f"m-{i:09d}",
                    "tenant": f"shop-{i % 3}",
                    "type": "track",
                    "event": kind,
                    "anonymous_id": f"anon-{i % 20_000}",
                    "user_id": None,
                    "event_time_ms": t,
                    "received_at_ms": t + 80,
                    "page_path": "/p/linen-shirt",
                    "ip_hash": "5f1c0a",
                    "traits": "{}",
                    "session_id": f"s-{i % 30_000}",
                    "cart_key": f"c-{i % 20_000}" if kind != "Product Viewed" else "",
                    "props": props,
                }
            )
        )
    return rows


def measure(ch: ClickHouse, rows: list[tuple], batch: int) -> float:
    """Insert ``rows`` into a fresh ``cx.events`` in batches; return rows per second."""
    ch.execute("DROP DATABASE IF EXISTS cx")
    migrate(ch)
    columns = list(EVENT_COLUMNS)
    ch.insert("cx.events", columns, rows[:batch])  # warm-up: type lookup, first part
    ch.execute("TRUNCATE TABLE cx.events")
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        ch.insert("cx.events", columns, rows[i : i + batch])
    elapsed = time.perf_counter() - start
    stored = ch.execute("SELECT count() FROM cx.events FINAL")[0][0]
    if stored != len(rows):
        raise RuntimeError(f"stored {stored} rows, inserted {len(rows)}")
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("urls", nargs="*", help="ClickHouse URLs (default: chdb in a temp dir and a local test server)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rows = synthetic_rows(args.rows)
    with ExitStack() as stack:
        urls = list(args.urls)
        if not urls:
            from infra.clickhouse_server import ClickHouseServer

            urls.append(f"chdb://{stack.enter_context(tempfile.TemporaryDirectory())}/chdb")
            urls.append(stack.enter_context(ClickHouseServer()).url)
        for url in urls:
            ch = connect(url)
            try:
                version = ".".join(map(str, ch.server_version()))
                rate = measure(ch, rows, args.batch)
            finally:
                ch.close()
            backend = url.split(":")[0]
            print(f"{backend:<10} ClickHouse {version:<10} {args.rows} rows, batches of {args.batch}: {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
