"""A visitor's friction memory, per session, and its compact serialized form (a key of the visitor state).

``FrictionState`` holds the ``SessionFriction`` of the visitor's most recent
sessions (at most ``MAX_SESSIONS``), so a late event of the previous session
that arrives after the next one started still finds its session's memory.
The session with the oldest last event leaves first; a session whose last
event is more than the session gap plus the allowed lateness before the
newest session's is dropped, since no event can still join it. Each
session's buffers keep only what a later (or late) event can still combine
with: the last ``MAX_CLICKS`` clicks and ``MAX_ERRORS`` errors, nothing older
than the rage/error window plus the allowed lateness, and the page views of
the u-turn window plus the allowed lateness (with the two pages before them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "COUNTED", "DONE", "ERRORED", "ROW", "UTURN", "FrictionState", "MAX_CLICKS", "MAX_ERRORS", "MAX_PAGES",
    "MAX_SESSIONS", "SessionFriction", "decode_friction", "encode_friction",
]  # fmt: skip

MAX_SESSIONS = 3
MAX_CLICKS = 16
MAX_ERRORS = 8
MAX_PAGES = 10
MAX_CHECKOUT_STEPS = 8

# Click flags ([t, selector, x, y, flags, burst]): COUNTED, the click joined a
# rage burst or completed one when it was decided (in event-time order); DONE,
# it completed a burst; ROW, a rage row stands for it; ERRORED, it is paired
# with an Error Shown. ``burst`` is the event time of the later click whose
# burst it belongs to as one of its first clicks, else None.
COUNTED = 1
ERRORED = 2
DONE = 4
ROW = 8

# Page view flag ([t, key, path, flags]): a u-turn row stands for the return
# to the page this view begins (set on the first view of the run).
UTURN = 1


@dataclass(slots=True)
class SessionFriction:
    sid: str
    last_ms: int = 0  # the latest event time seen in this session
    pages: list[list] = field(default_factory=list)  # [t_ms, key, path, flags], sorted by t_ms
    clicks: list[list] = field(default_factory=list)  # [t_ms, selector, x, y, flags, burst_ms], sorted by t_ms
    errors: list[list] = field(default_factory=list)  # [t_ms, paired 0/1], sorted by t_ms
    step_views: dict[str, int] = field(default_factory=dict)  # checkout step -> views this session
    coupons_denied: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # signal -> occurrences this session
    checkout_id: str = ""  # the session's latest checkout ('' if it had none with an id)
    in_checkout: bool = False
    ordered: bool = False
    assist_ms: int | None = None  # event time of the session's last checkout_friction trigger

    @property
    def page(self) -> str:
        """The path of the session's current page: its latest page view in event time."""
        return self.pages[-1][2] if self.pages else ""


@dataclass(slots=True)
class FrictionState:
    sessions: list[SessionFriction] = field(default_factory=list)  # oldest last event first

    def session(self, sid: str, t_ms: int, forget_ms: int) -> SessionFriction:
        """The memory of session ``sid`` (started if new), after an event at ``t_ms``."""
        sessions = self.sessions
        if sessions and sessions[-1].sid == sid:  # the newest session again: most events
            found = sessions[-1]
            if t_ms > found.last_ms:
                found.last_ms = t_ms
                if len(sessions) > 1:
                    self.sessions = [s for s in sessions if s is found or t_ms - s.last_ms <= forget_ms]
            return found
        found = next((s for s in sessions if s.sid == sid), None)
        if found is None:
            found = SessionFriction(sid=sid, last_ms=t_ms)
            self.sessions.append(found)
        found.last_ms = max(found.last_ms, t_ms)
        self.sessions.sort(key=lambda s: s.last_ms)
        newest = self.sessions[-1].last_ms
        self.sessions = [s for s in self.sessions if s is found or newest - s.last_ms <= forget_ms]
        if len(self.sessions) > MAX_SESSIONS:
            drop = next(s for s in self.sessions if s is not found)
            self.sessions.remove(drop)
        return found


_FIELDS = (  # (key, attribute, empty value)
    ("s", "sid", None),
    ("t", "last_ms", 0),
    ("g", "pages", []),
    ("c", "clicks", []),
    ("e", "errors", []),
    ("sv", "step_views", {}),
    ("cd", "coupons_denied", 0),
    ("n", "counts", {}),
    ("x", "checkout_id", ""),
    ("ic", "in_checkout", False),
    ("od", "ordered", False),
    ("as", "assist_ms", None),
)


def _encode_session(f: SessionFriction) -> dict:
    out: dict = {}
    for key, attr, empty in _FIELDS:
        value = getattr(f, attr)
        if value != empty:
            out[key] = value
    return out


def _decode_session(d: dict) -> SessionFriction:
    f = SessionFriction(sid=d["s"])
    for key, attr, _ in _FIELDS[1:]:
        if key in d:
            setattr(f, attr, d[key])
    for click in f.clicks:  # a state written before clicks had their burst slot
        click.extend([None] * (6 - len(click)))
    return f


def encode_friction(state: FrictionState) -> dict:
    """The newest session's fields, with the older sessions under ``o`` when there are any."""
    *older, newest = state.sessions
    out = _encode_session(newest)
    if older:
        out["o"] = [_encode_session(s) for s in older]
    return out


def decode_friction(d: dict) -> FrictionState:
    older = [_decode_session(o) for o in d.get("o", [])]
    return FrictionState(sessions=[*older, _decode_session(d)])
