"""An event-time merge of several ordered streams: the same order on every run; pure.

The customer stage reads messages that the device stage sent from each of
the ``sources`` partitions of ``cx.events``. Kafka keeps each source's
messages in order (one producer per source partition, one key per
customer), but the interleaving of two sources depends on which worker ran
faster. A decision that reads what another device did ("one offer per 24 h",
"not after an order") would then depend on timing. This merge removes the
timing: messages are released in the order of their key, and a key is
released only when every source has promised that nothing smaller follows.

Each message carries ``key = (key_ms, source, offset, index)``:

- ``key_ms`` is the message's event time, raised to the source's
  watermark before the record that produced it (so it is never below a
  promise the source made before);
- ``source``, ``offset`` (the ``cx.events`` offset that produced it) and
  ``index`` (its place among what that offset produced) break ties the same
  way on every run.

A source *announces* a key from time to time: a promise that its later
messages have keys at or above it (the watermark and the position the
source's next message will take). The merge releases, in key order, every
held message whose key is below the smallest announcement of all sources.
When the announcements arrive does not change what is released in which
order, only how soon.

A source that has sent nothing since it was assigned and is caught up may
say it is *idle*: until its next promise it does not hold the others back.
Its first message may then be below the frontier (late).

A message whose key is below the frontier cannot come from a source that
keeps its promise; the merge still releases it at once, after everything
released before it (``late`` counts them), so nothing is lost.

The frontier is kept in a heap of the promises, not recomputed over all
sources at each message: a promise is pushed, and one that a newer promise
of its source (or the source's going idle) outdated is dropped when it
comes to the top. With a promise per record from every device partition to
every customer partition, recomputing made a replay over ``n`` busy
partitions cost ``n`` cubed per record; the heap makes it ``n`` squared
times ``log n``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Collection

__all__ = ["Held", "StreamMerge"]

Key = tuple[int, int, int, int]  # (key_ms, source, offset, index)


@dataclass(order=True, slots=True)
class Held:
    key: Key
    message: Any = field(compare=False)


class StreamMerge:
    """Holds messages until every source's announced watermark has passed them."""

    def __init__(self, sources: int) -> None:
        if sources < 1:
            raise ValueError("a merge needs at least one source")
        self.sources = sources
        self.announced: list[Key | None] = [None] * sources  # read-only outside, as ``idle``
        self.late = 0
        self.idle: set[int] = set()
        self._held: list[Held] = []
        # Every promise in force (of a source not idle) is in this heap; outdated ones may be too,
        # until they come to the top. ``_missing``: sources neither idle nor with a promise.
        self._promises: list[Key] = []
        self._missing = sources

    def __len__(self) -> int:
        return len(self._held)

    @property
    def frontier(self) -> Key | None:
        """Messages with keys below this are released; None until every source announced."""
        if self._missing or len(self.idle) == self.sources:
            return None
        promises, announced, idle = self._promises, self.announced, self.idle
        while True:  # a promise in force is in the heap, so this ends on one
            top = promises[0]
            if top[1] not in idle and announced[top[1]] == top:
                return top
            heapq.heappop(promises)

    def add(self, key: Key, message: Any) -> list[Held]:
        """Hold one message; returns it at once (as a one-item list) when it is late."""
        if not 0 <= key[1] < self.sources:
            raise ValueError(f"source {key[1]} is not one of the {self.sources} sources")
        frontier = self.frontier
        if frontier is not None and key < frontier:
            self.late += 1  # its source broke its promise: release it now, in arrival order
            return [Held(key, message)]
        heapq.heappush(self._held, Held(key, message))
        return []

    def announce(self, promise: Key) -> list[Held]:
        """Record a source's promise (its own key; one not above the last is ignored); returns what it releases."""
        source = promise[1]
        if not 0 <= source < self.sources:
            raise ValueError(f"source {source} is not one of the {self.sources} sources")
        previous = self.announced[source]
        if previous is not None and promise <= previous:
            if source in self.idle:
                self.idle.discard(source)  # it speaks again, with nothing newer to promise
                self._push(previous)
                return self._release()
            return []
        if source in self.idle:
            self.idle.discard(source)  # idle, it was not missing; it is not now either
        elif previous is None:
            self._missing -= 1
        self.announced[source] = promise
        self._push(promise)
        return self._release()

    def set_idle(self, source: int) -> list[Held]:
        """The source is caught up and has sent nothing lately: stop waiting for it; returns what that releases."""
        if not 0 <= source < self.sources:
            raise ValueError(f"source {source} is not one of the {self.sources} sources")
        if source in self.idle:
            return []
        self.idle.add(source)
        if self.announced[source] is None:
            self._missing -= 1
        return self._release()

    def held(self) -> list[Held]:
        """The messages still held, in key order (for persisting)."""
        return sorted(self._held)

    def restore(self, announced: list[Key | None], held: list[Held], idle: Collection[int] = frozenset()) -> None:
        """Continue from ``announced``, ``held`` and ``idle`` persisted earlier (before any ``add``)."""
        if len(announced) != self.sources:
            raise ValueError(f"{len(announced)} announcements for {self.sources} sources")
        self.announced = list(announced)
        self.idle = set(idle)
        self._held = list(held)
        heapq.heapify(self._held)
        self._rebuild()

    def _push(self, promise: Key) -> None:
        promises = self._promises
        heapq.heappush(promises, promise)
        if len(promises) > 4 * self.sources + 64:
            self._rebuild()  # outdated promises under a source that stays behind: drop them

    def _rebuild(self) -> None:
        announced, idle = self.announced, self.idle
        self._promises = [a for source, a in enumerate(announced) if a is not None and source not in idle]
        heapq.heapify(self._promises)
        self._missing = sum(1 for source, a in enumerate(announced) if a is None and source not in idle)

    def _release(self) -> list[Held]:
        held = self._held
        out: list[Held] = []
        if not held:
            return out  # nothing to release: the frontier is not needed
        frontier = self.frontier
        if frontier is None:
            return out
        while held and held[0].key < frontier:
            out.append(heapq.heappop(held))
        return out
