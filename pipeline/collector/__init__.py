"""The Segment-compatible collector: HTTP API -> validated, normalized events on Kafka.

Modules, from the edge inwards:

- ``server``: aiohttp app (``make_app``) and ``run_collector`` for the CLI;
- ``auth``: write keys -> tenants; ``body``: size limits, gzip, JSON;
- ``ingest``: a request's messages -> events and dead letters;
- ``normalize`` and ``catalog``: one message -> one Event dict (pure);
- ``packing``: events -> one Kafka record per partition (``pipeline.wire.partitioner``);
- ``producer``: acknowledged sends with confluent-kafka.

Nothing is imported here, so the worker can use ``normalize`` (its scrubber) without
pulling in aiohttp or the producer.
"""
