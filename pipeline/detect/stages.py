"""Both stages in one process, messages handed over in memory; pure.

The worker runs the device stage (``processor.PartitionProcessor``, one per
partition of ``cx.events``) and the customer stage (``customer.
CustomerProcessor``, one per partition of ``cx.customers``) with Kafka
between them. ``LocalStages`` runs the same two with a list between them:
after each record (or idle tick) of a device partition, its new messages go
to their customer partitions, then its promise to every customer partition
(the same order the worker's producer keeps). The backtest, ``cxstream
bench-cpu`` and the tests use it; the decisions are the ones the worker
makes, because the merge makes them independent of how the messages of
different partitions interleave.
"""

from __future__ import annotations

from typing import Callable, Iterable, MutableMapping

from pipeline.detect.customer import CustomerProcessor, customer_key
from pipeline.detect.processor import Output, PartitionProcessor
from pipeline.detect.rules import Rules

__all__ = ["CONVERSIONS_TABLE", "LocalStages", "forward"]

CONVERSIONS_TABLE = "cx.cart_conversions"
END_MS = 2**62  # a promise past any event time
Route = Callable[[str], int]  # a customer key -> its partition of cx.customers


def forward(device: PartitionProcessor, sent: int, route: Route, customers: list[CustomerProcessor],
            promised: tuple | None, wall_ms: int) -> tuple[int, tuple | None]:  # fmt: skip
    """Hand the device partition's messages after the first ``sent`` to their customer partitions, then
    its promise to all; returns the new (sent, promised)."""
    messages = device.pending.messages
    for message in messages[sent:]:
        customers[route(customer_key(message["t"], message["c"]))].add(message, wall_ms)
    promise = device.announcement()
    if promise is not None and promise != promised:
        for customer in customers:
            customer.add({"m": "watermark", "k": list(promise)}, wall_ms)
        promised = promise
    return len(messages), promised


class LocalStages:
    """The device and customer stages over one table (a dict), as the worker runs them."""

    def __init__(self, rules: Rules, table: MutableMapping[str, bytes], *, partitions: int = 1,
                 route: Route | None = None) -> None:  # fmt: skip
        """``partitions`` of both topics; ``route`` picks a customer's partition (needed when more than one)."""
        if partitions > 1 and route is None:
            raise ValueError("several partitions need a route for customer keys")
        self.rules = rules
        self.table = table
        self.partitions = partitions
        self.route: Route = route or (lambda _key: 0)
        self.devices: dict[int, PartitionProcessor] = {}
        self.customers = [
            CustomerProcessor(rules, table.get, sources=partitions, partition=q) for q in range(partitions)
        ]
        self._sent: dict[int, int] = {}
        self._promised: dict[int, tuple | None] = {}
        self._fired: list[dict] = []
        self._taken = {"device": {}, "customer": [0] * partitions}

    def device(self, partition: int = 0, restore: Iterable[tuple[str, bytes]] | None = None) -> PartitionProcessor:
        proc = self.devices.get(partition)
        if proc is None:
            proc = PartitionProcessor(self.rules, self.table.get, partition=partition if self.partitions > 1 else -1)
            proc.restore(list(self.table.items()) if restore is None else restore)
            self.devices[partition] = proc
        return proc

    def process(self, partition: int, offset: int, events: list[dict], wall_ms: int) -> None:
        self.device(partition).process(offset, events, wall_ms)
        self._forward(partition, wall_ms)

    def tick(self, partition: int, wall_ms: int, caught_up: bool) -> None:
        device = self.device(partition)
        device.tick(wall_ms, caught_up)
        if device.watermark_ms is None and caught_up:
            self.idle(partition, wall_ms)  # nothing ever came: it holds nobody back
        self._forward(partition, wall_ms)

    def finish(self, wall_ms: int) -> None:
        """The end of the data: every source promises nothing more, so the customer stage decides all it holds."""
        for source in range(self.partitions):
            for customer in self.customers:
                customer.add({"m": "watermark", "k": [END_MS, source, 0, 0]}, wall_ms)
        self._take_triggers()

    def idle(self, partition: int, wall_ms: int = 0) -> None:
        """The partition is caught up with nothing to send: the customer stage stops waiting for it."""
        source = partition if self.partitions > 1 else 0
        for customer in self.customers:
            customer.add({"m": "idle", "src": source}, wall_ms)
        self._take_triggers()

    def drain(self) -> Output:
        """Everything since the last drain, both stages; triggers in the order they fired."""
        out = Output()
        for partition, proc in self.devices.items():
            part = proc.drain()
            out.rows += part.rows
            out.states.update(part.states)
            for table, rows in part.facts.items():
                out.facts.setdefault(table, []).extend(rows)
            self._sent[partition] = 0
        for customer in self.customers:
            part = customer.drain()
            out.states.update(part.states)
            for table, rows in part.facts.items():
                out.facts.setdefault(table, []).extend(rows)
            if part.conversions:
                out.facts.setdefault(CONVERSIONS_TABLE, []).extend(part.conversions)
        self._take_triggers()
        out.triggers, self._fired = self._fired, []
        self._taken = {"device": {}, "customer": [0] * self.partitions}
        return out

    def _forward(self, partition: int, wall_ms: int) -> None:
        device = self.devices[partition]
        self._sent[partition], self._promised[partition] = forward(
            device, self._sent.get(partition, 0), self.route, self.customers, self._promised.get(partition), wall_ms
        )
        self._take_triggers({partition: device})

    def _take_triggers(self, devices: dict[int, PartitionProcessor] | None = None) -> None:
        """Collect the triggers fired since the last call, device stage first (its messages came first).

        ``devices``: the only ones that may have fired since (after a record or tick of one
        partition, its processor alone); default all.
        """
        fired = self._fired
        taken = self._taken["device"]
        for partition, proc in (self.devices if devices is None else devices).items():
            triggers = proc.pending.triggers
            start = taken.get(partition, 0)
            if len(triggers) > start:  # it runs after every record of every partition: mostly nothing new
                fired += triggers[start:]
                taken[partition] = len(triggers)
        taken = self._taken["customer"]
        for q, customer in enumerate(self.customers):
            triggers = customer.pending.triggers
            if len(triggers) > taken[q]:
                fired += triggers[taken[q]:]
                taken[q] = len(triggers)
