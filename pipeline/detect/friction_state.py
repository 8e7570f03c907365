"""A session's friction memory and its compact serialized form (a key of the visitor state).

It belongs to one session (``sid``) and is started afresh when the visitor's
session changes, so it never grows with the visitor's history. The click and
error buffers keep only what a later (or late) event can still combine with:
the last ``MAX_CLICKS`` clicks and ``MAX_ERRORS`` errors, and nothing older
than the rage/error window plus the allowed lateness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CONSUMED", "ERRORED", "FrictionState", "MAX_CLICKS", "MAX_ERRORS", "decode_friction", "encode_friction"]

MAX_CLICKS = 16
MAX_ERRORS = 8
MAX_CHECKOUT_STEPS = 8

# Click flags: part of a rage burst already counted; paired with an Error Shown.
CONSUMED = 1
ERRORED = 2


@dataclass(slots=True)
class FrictionState:
    sid: str
    page: str = ""  # path of the session's current page
    page_key: str = ""  # what tells pages apart: its url (a search's query string counts), else its path
    prev_key: str = ""  # the key of the page before it
    page_ms: int | None = None  # event time of the current page view
    clicks: list[list] = field(default_factory=list)  # [t_ms, selector, x, y, flags], sorted by t_ms
    errors: list[list] = field(default_factory=list)  # [t_ms, paired 0/1], sorted by t_ms
    step_views: dict[str, int] = field(default_factory=dict)  # checkout step -> views this session
    coupons_denied: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # signal -> occurrences this session
    checkout_id: str = ""  # the session's latest checkout ('' if it had none with an id)
    in_checkout: bool = False
    ordered: bool = False
    assist_ms: int | None = None  # event time of the session's last checkout_friction trigger


def encode_friction(f: FrictionState) -> dict:
    out: dict = {"s": f.sid}
    for key, value, empty in (
        ("p", f.page, ""),
        ("pk", f.page_key, ""),
        ("pp", f.prev_key, ""),
        ("pt", f.page_ms, None),
        ("c", f.clicks, []),
        ("e", f.errors, []),
        ("sv", f.step_views, {}),
        ("cd", f.coupons_denied, 0),
        ("n", f.counts, {}),
        ("x", f.checkout_id, ""),
        ("ic", f.in_checkout, False),
        ("od", f.ordered, False),
        ("as", f.assist_ms, None),
    ):
        if value != empty:
            out[key] = value
    return out


def decode_friction(d: dict) -> FrictionState:
    return FrictionState(
        sid=d["s"],
        page=d.get("p", ""),
        page_key=d.get("pk", ""),
        prev_key=d.get("pp", ""),
        page_ms=d.get("pt"),
        clicks=d.get("c", []),
        errors=d.get("e", []),
        step_views=d.get("sv", {}),
        coupons_denied=d.get("cd", 0),
        counts=d.get("n", {}),
        checkout_id=d.get("x", ""),
        in_checkout=d.get("ic", False),
        ordered=d.get("od", False),
        assist_ms=d.get("as"),
    )
