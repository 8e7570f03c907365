"""ClickHouse storage: connections, versioned DDL, row mapping and the batching sink.

Design, and why:

* **One portable SQL subset.** The same DDL files and views run unchanged on
  embedded chdb (ClickHouse 26.9 in-process) and on a ClickHouse server as
  old as 18.16, the one Debian ships. So: no DateTime64, Nullable,
  LowCardinality, TTL, Map, window functions or ``CREATE OR REPLACE``;
  absent values are ``''`` or ``0``; views stack per-day aggregates with
  ``UNION ALL`` and ``GROUP BY`` instead of FULL JOINs.
* **Exact numbers under replays.** Every table is a ``ReplacingMergeTree``
  ordered by the record's deterministic id, and every view reads with
  ``FINAL``. A replay after a crash, a retried insert or two workers writing
  the same record leave one logical row, and the views are exact at once
  (merges that physically drop the copies run later). Insert-level
  de-duplication (``insert_deduplication_token``) would be cheaper at read
  time but 18.16 lacks it, and it only catches byte-identical blocks, not a
  replay that batches records differently.
* **UTC everywhere.** Time columns are ``DateTime('UTC')`` and ``day`` is
  computed from epoch milliseconds in UTC by the writer, so neither the
  server's nor the session's time zone can move an event to another day.

Modules: ``client`` (``connect(url)`` for ``chdb://`` and ``clickhouse://``;
backends in ``backend_chdb`` and ``backend_server``, what both share in ``protocol``), ``migrate`` (applies
``ddl/*.sql`` once), ``cluster`` (the same DDL rendered for a ClickHouse
cluster: replicated ``_local`` tables under Distributed tables, ``ON
CLUSTER``), ``rows`` (worker dicts to row tuples, dropping free
text), ``sink`` (buffer, then one insert per table). Rows/s per backend:
``python -m pipeline.tools.insert_bench``.
"""

import pipeline  # noqa: F401,E402 - installs the finder of compiled copies (pipeline/native.py) before sinks.rows loads
