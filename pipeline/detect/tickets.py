"""One support ticket's state, its KPIs, and its compact serialized form.

A ``Ticket`` lives in the ``VisitorState`` of the key its helpdesk events
arrive under (the helpdesk sends ``userId`` only, so that is the
customer's server-side key). The KPI definitions are here, as properties,
so that the fact rows and the tests read them from one place:

- first response: ticket opened -> first ``agent`` message, in ms (None
  until an agent wrote; 0 if the helpdesk's clock put the reply first);
- resolution: ticket opened -> its latest ``Support Ticket Resolved`` (None
  while not resolved);
- contacts: messages the customer wrote on the ticket;
- reopened: the helpdesk said so (``reopened: true``), or the ticket was
  resolved more than once;
- first-contact resolution (FCR): resolved, exactly one agent reply, not
  reopened;
- linked surveys: per kind (CSAT, NPS, CES), the answer naming the ticket
  with the latest event time, whatever order the answers arrived in
  (``note_survey``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SURVEY_KINDS", "Ticket", "decode_ticket", "encode_ticket"]

SURVEY_KINDS = ("csat", "nps", "ces")


@dataclass(slots=True)
class Ticket:
    ticket_id: str
    opened_ms: int | None = None  # None: no Support Ticket Opened seen (yet)
    channel: str = ""
    topic: str = ""
    order_id: str = ""
    first_agent_ms: int | None = None  # earliest agent message, event time
    agent_msgs: int = 0
    customer_msgs: int = 0
    negative_msgs: int = 0
    resolved_ms: int | None = None  # latest resolution, event time
    resolutions: int = 0
    reopened_flag: bool = False  # a resolution said reopened: true
    waiting: bool = False  # the customer wrote after the latest resolution
    risk_fired: bool = False  # a support_risk trigger fired since the ticket last (re)opened
    openings: int = 0  # times the ticket became open again after a resolution
    csat: float | None = None
    nps: float | None = None
    ces: float | None = None
    csat_ms: int | None = None  # event time of the answer kept in csat
    nps_ms: int | None = None
    ces_ms: int | None = None
    version: int = 0  # grows with every change: the row's ReplacingMergeTree version
    last_ms: int = 0  # latest event time seen on the ticket (retention)

    @property
    def is_open(self) -> bool:
        """Not resolved, or the customer wrote again after the latest resolution."""
        return self.resolved_ms is None or self.waiting

    @property
    def resolved(self) -> bool:
        return self.resolved_ms is not None and not self.waiting

    @property
    def reopened(self) -> bool:
        return self.reopened_flag or self.resolutions > 1

    @property
    def first_response_ms(self) -> int | None:
        if self.opened_ms is None or self.first_agent_ms is None:
            return None
        return max(0, self.first_agent_ms - self.opened_ms)

    @property
    def resolution_ms(self) -> int | None:
        if self.opened_ms is None or not self.resolved:
            return None
        assert self.resolved_ms is not None
        return max(0, self.resolved_ms - self.opened_ms)

    @property
    def fcr(self) -> bool:
        return self.resolved and self.agent_msgs == 1 and not self.reopened

    def note_survey(self, kind: str, score: float, t_ms: int) -> None:
        """Keep a ``kind`` answer at ``t_ms`` if it is the latest in event time.

        An answer at the same millisecond as the kept one replaces it (the
        later in the stream wins; a replay keeps the same one).
        """
        kept_ms = getattr(self, kind + "_ms")
        if kept_ms is None or t_ms >= kept_ms:
            setattr(self, kind, score)
            setattr(self, kind + "_ms", t_ms)


_OPTIONAL = (
    ("o", "opened_ms"),
    ("fa", "first_agent_ms"),
    ("r", "resolved_ms"),
    ("cs", "csat"),
    ("np", "nps"),
    ("ce", "ces"),
    ("cst", "csat_ms"),
    ("npt", "nps_ms"),
    ("cet", "ces_ms"),
)
_COUNTS = (
    ("am", "agent_msgs"),
    ("cm", "customer_msgs"),
    ("ng", "negative_msgs"),
    ("rn", "resolutions"),
    ("op", "openings"),
)
_TEXTS = (("ch", "channel"), ("tp", "topic"), ("od", "order_id"))
_FLAGS = (("ro", "reopened_flag"), ("w", "waiting"), ("rf", "risk_fired"))


def encode_ticket(t: Ticket) -> dict:
    """Short keys, defaults left out: a resolved ticket is about 170 bytes serialized, 260 with three surveys."""
    out: dict = {"i": t.ticket_id, "v": t.version, "l": t.last_ms}
    for key, name in _OPTIONAL:
        value = getattr(t, name)
        if value is not None:
            out[key] = value
    for key, name in _COUNTS + _TEXTS + _FLAGS:
        value = getattr(t, name)
        if value:
            out[key] = value
    return out


def decode_ticket(d: dict) -> Ticket:
    t = Ticket(ticket_id=d["i"], version=d["v"], last_ms=d["l"])
    for key, name in _OPTIONAL + _COUNTS + _TEXTS + _FLAGS:
        if key in d:
            setattr(t, name, d[key])
    return t
