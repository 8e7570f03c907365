"""Sessions (docs/detection.md): 30 minutes without events ends one, unless the SDK names it.

- With ``session_hint`` (context.session_id), the hint names the session:
  its id is ``stable_id('session', tenant, visitor, 'sdk', hint)`` (20
  hex). SDKs number sessions per device (Amplitude and GA4 use the start
  time), so the same hint from two visitors is two sessions.
- Otherwise a visitor's session continues while events come less than
  ``session_gap_ms`` after the latest event time seen; an event exactly
  ``session_gap_ms`` later starts a new one, whose id is
  ``stable_id('session', tenant, visitor, start_ms)`` (20 hex), so a replay
  names it the same.
- An out-of-order (earlier) event joins the current session.
- Events with neither an anonymous id nor a hint (server-side and helpdesk
  calls keyed on the user id) belong to no browser session: ``''``.
"""

from __future__ import annotations

from pipeline.detect.state import VisitorState
from pipeline.wire.records import stable_id

__all__ = ["assign_session", "SESSION_ID_HEX"]

SESSION_ID_HEX = 20


def assign_session(state: VisitorState, event_time_ms: int, hint: str | None, gap_ms: int) -> str:
    """Place one applied event in a session; updates ``state`` and returns the session id."""
    last_ms = state.max_event_ms
    if last_ms is None or event_time_ms > last_ms:
        state.max_event_ms = event_time_ms
    if hint:
        sid = stable_id("session", state.tenant, state.visitor_id, "sdk", hint)[:SESSION_ID_HEX]
        if sid != state.session_id:
            state.session_id, state.session_start_ms = sid, event_time_ms
        return sid
    if not state.anonymous_id:
        return ""
    if not state.session_id or last_ms is None or event_time_ms - last_ms >= gap_ms:
        sid = stable_id("session", state.tenant, state.visitor_id, event_time_ms)[:SESSION_ID_HEX]
        state.session_id, state.session_start_ms = sid, event_time_ms
    return state.session_id
