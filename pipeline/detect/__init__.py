"""The pure stream-processing core: sessions, de-duplication, carts, abandonment, offers, friction.

No Faust, no Kafka, no I/O and no clock reads: the worker passes events,
offsets and the wall clock in (``processor.PartitionProcessor``) and writes
what ``drain()`` returns. Everything here is deterministic in the events.
"""

from pipeline.detect.processor import Output, PartitionProcessor
from pipeline.detect.rules import Rules

__all__ = ["Output", "PartitionProcessor", "Rules"]
