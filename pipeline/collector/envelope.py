"""The Segment message envelope, validated by pydantic at the collector's edge.

Every message of a request goes through ``SegmentMessage`` before anything
else reads it: the call type, the ids, the time fields and the objects
(``properties``, ``traits``, ``context``) must have Segment's shapes. What
fails becomes a dead letter: ``unknown_type`` when ``type`` is not one of
Segment's calls, ``schema_violation`` for everything else, with pydantic's
own words for the first error as the detail.

Ids follow Segment: a string, or a number that Segment's SDKs turn into a
string; an empty id counts as absent. Unknown fields are allowed and kept
in the raw message (the content hash that stands in for a missing
``messageId`` is computed on the raw message). Event properties are checked
against the catalog afterwards (``pipeline.collector.catalog``).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictStr, ValidationError, model_validator

from pipeline.records import CallType

__all__ = ["EnvelopeError", "SegmentMessage", "validate_envelope"]


def _segment_id(value: object) -> object:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value  # a string passes; anything else fails the str check below


SegmentId = Annotated[StrictStr | None, BeforeValidator(_segment_id)]


class SegmentMessage(BaseModel):
    """The envelope fields cxstream reads from one Segment call."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: CallType
    event: StrictStr | None = None
    anonymousId: SegmentId = None
    userId: SegmentId = None
    messageId: SegmentId = None
    groupId: SegmentId = None
    previousId: SegmentId = None
    timestamp: StrictStr | None = None
    originalTimestamp: StrictStr | None = None
    sentAt: StrictStr | None = None
    properties: dict | None = None
    traits: dict | None = None
    context: dict | None = None

    @model_validator(mode="after")
    def _who_and_what(self) -> SegmentMessage:
        if self.anonymousId is None and self.userId is None:
            raise ValueError("userId or anonymousId is required")
        if self.type == "track" and not self.event:
            raise ValueError("track needs a non-empty event name")
        return self


class EnvelopeError(Exception):
    """A message whose envelope is not Segment's: the dead-letter reason and detail."""

    def __init__(self, reason: Literal["unknown_type", "schema_violation"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def validate_envelope(msg: dict) -> SegmentMessage:
    """``msg`` as a ``SegmentMessage``; raises ``EnvelopeError`` naming the first problem."""
    try:
        return SegmentMessage.model_validate(msg)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        if where == "type":
            reason: Literal["unknown_type", "schema_violation"] = "unknown_type"
            # The rule, never the value sent: a dead-letter detail may not quote personal data.
            detail = f"type must be one of {', '.join(get_args(CallType))}"
        else:
            reason = "schema_violation"
            message = first["msg"].removeprefix("Value error, ")
            detail = f"{where}: {message}" if where else message
        raise EnvelopeError(reason, detail) from None
