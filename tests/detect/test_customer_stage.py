"""The customer stage: one customer over several devices and the backend, decided in event time."""

from __future__ import annotations

from pipeline.detect.customer import (
    CustomerProcessor, CustomerState, customer_key, decode_customer, encode_customer,
)  # fmt: skip
from tests.detect.helpers import DAY, EXACT, HOUR, MIN, T0

TENANT = "shop-a"
DEADLINE = T0 + 30 * MIN  # a cart last touched at T0, abandoned after 30 minutes


class Stage:
    """Feeds a ``CustomerProcessor`` from two device partitions and keeps what it emits."""

    def __init__(self, sources: int = 2) -> None:
        self.table: dict[str, bytes] = {}
        self.proc = CustomerProcessor(EXACT, self.table.get, sources=sources)
        self.offsets = [0] * sources
        self.triggers: list[dict] = []
        self.conversions: list[dict] = []

    def send(self, source: int, kind: str, t_ms: int, key_ms: int | None = None, **fields) -> None:
        self.offsets[source] += 1
        message = {"m": kind, "t": TENANT, "c": fields.pop("customer", "cust-1"), "ts": t_ms, "vis": "v1",
                   "k": [t_ms if key_ms is None else key_ms, source, self.offsets[source], 0], **fields}  # fmt: skip
        self.proc.add(message, wall_ms=0)

    def announce(self, source: int, watermark_ms: int) -> None:
        promise = [watermark_ms, source, self.offsets[source] + 1, 0]  # where its next message goes
        self.proc.add({"m": "watermark", "k": promise}, wall_ms=0)

    def announce_all(self, watermark_ms: int) -> None:
        for source in range(len(self.offsets)):
            self.announce(source, watermark_ms)

    def drain(self) -> None:
        out = self.proc.drain()
        self.table.update(out.states)
        self.triggers += out.triggers
        self.conversions += out.conversions

    def actions(self) -> list[tuple[str, str, str]]:
        return [(t["kind"], t["cart_key"], t["action"]) for t in self.triggers]


def candidate(cart_key: str, deadline_ms: int, *, anon: str, cart_id: str | None = None,
              checkouts: tuple[str, ...] = (), value: float = 80.0) -> dict:  # fmt: skip
    return {
        "trig": {
            "trigger_id": f"trig-{cart_key}-{deadline_ms}",
            "kind": "cart_abandoned",
            "tenant": TENANT,
            "customer_id": "cust-1",
            "anonymous_id": anon,
            "cart_id": cart_id,
            "cart_key": cart_key,
            "cart_value": value,
            "currency": "EUR",
            "items": [],
            "session_id": "s1",
            "event_time_ms": deadline_ms,
            "reasons": ["inactive_30m"],
            "friction_score": 0,
            "ref_trigger_id": None,
            "checkouts": list(checkouts),
        },
        "since": deadline_ms - 30 * MIN,
    }


def consenting(stage: Stage, source: int = 0, t_ms: int = T0 - HOUR) -> None:
    stage.send(source, "consent", t_ms, val=True)


def test_second_device_cart_within_a_day_is_capped():
    stage = Stage()
    consenting(stage)
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.send(1, "candidate", DEADLINE + 2 * HOUR, **candidate("laptop/c1", DEADLINE + 2 * HOUR, anon="laptop"))
    stage.announce_all(DEADLINE + 3 * HOUR)
    stage.drain()
    assert stage.actions() == [
        ("cart_abandoned", "phone/c1", "offer"),
        ("cart_abandoned", "laptop/c1", "none"),  # one offer per customer per 24 h, across devices
    ]


def test_the_earlier_deadline_gets_the_offer_whichever_device_arrives_first():
    # The laptop's candidate reaches the stage first, but the phone's deadline is earlier in event time.
    stage = Stage()
    consenting(stage, source=1)
    stage.send(1, "candidate", DEADLINE + HOUR, **candidate("laptop/c1", DEADLINE + HOUR, anon="laptop"))
    stage.announce(1, DEADLINE + 2 * HOUR)
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.announce(0, DEADLINE + 2 * HOUR)
    stage.drain()
    assert stage.actions() == [
        ("cart_abandoned", "phone/c1", "offer"),
        ("cart_abandoned", "laptop/c1", "none"),
    ]


def test_the_cap_frees_up_24_hours_after_the_first_offer():
    stage = Stage()
    consenting(stage)
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.send(1, "candidate", DEADLINE + DAY, **candidate("laptop/c1", DEADLINE + DAY, anon="laptop"))
    stage.announce_all(DEADLINE + DAY + 1)
    stage.drain()
    assert [a for _, _, a in stage.actions()] == ["offer", "offer"]


def test_consent_withdrawn_on_one_device_stops_the_offer_on_the_other():
    stage = Stage()
    consenting(stage, source=0, t_ms=T0 - DAY)
    stage.send(1, "consent", T0 + 10 * MIN, val=False)  # said no on the laptop
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    assert stage.actions() == [("cart_abandoned", "phone/c1", "none")]


def test_an_older_consent_arriving_late_does_not_override_a_newer_one():
    stage = Stage()
    stage.send(1, "consent", T0 + 10 * MIN, val=False)
    stage.announce_all(T0 + 20 * MIN)
    stage.send(0, "consent", T0, val=True)  # below the frontier: late, applied at once
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    assert stage.actions() == [("cart_abandoned", "phone/c1", "none")]


def test_server_side_order_cancels_the_live_browser_offer():
    stage = Stage()
    consenting(stage)
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    # The backend's order (user id only) an hour after the offer, from another partition.
    stage.send(1, "order", DEADLINE + HOUR, oid="o-77", rev=80.0)
    stage.announce_all(DEADLINE + 2 * HOUR)
    stage.drain()
    assert stage.actions() == [("cart_abandoned", "phone/c1", "offer"), ("offer_cancelled", "phone/c1", "none")]
    cancel = stage.triggers[1]
    assert cancel["ref_trigger_id"] == f"trig-phone/c1-{DEADLINE}"
    assert cancel["event_time_ms"] == DEADLINE + HOUR
    assert cancel["customer_id"] == "cust-1" and cancel["anonymous_id"] == "phone"


def test_server_side_order_before_the_deadline_closes_the_cart_without_a_trigger():
    stage = Stage()
    consenting(stage)
    stage.send(1, "order", T0 + 10 * MIN, oid="o-1", rev=80.0, cart="c1")
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone", cart_id="c1"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    assert stage.triggers == []
    assert stage.conversions == [{
        "tenant": TENANT, "customer_id": "cust-1", "cart_key": "phone/c1",
        "ordered_at_ms": T0 + 10 * MIN, "deadline_ms": DEADLINE,
    }]  # fmt: skip


def test_order_naming_another_cart_does_not_close_this_one():
    stage = Stage()
    consenting(stage)
    stage.send(1, "order", T0 + 10 * MIN, oid="o-1", rev=20.0, cart="other")
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone", cart_id="c1"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    # Not bought, but the customer did order since the cart was last touched: no discount for them.
    assert stage.actions() == [("cart_abandoned", "phone/c1", "none")]
    assert stage.conversions == []


def test_order_naming_the_checkout_closes_its_cart():
    stage = Stage()
    consenting(stage)
    stage.send(1, "order", T0 + 5 * MIN, oid="o-1", rev=80.0, checkout="chk-9")
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone", checkouts=("chk-9",)))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    assert stage.triggers == [] and [c["cart_key"] for c in stage.conversions] == ["phone/c1"]


def test_same_order_from_browser_and_backend_counts_once():
    stage = Stage()
    stage.send(0, "order", T0, oid="o-5", rev=120.0, session="s1")
    stage.send(1, "order", T0 + 2000, oid="o-5", rev=120.0)
    stage.announce_all(T0 + MIN)
    stage.drain()
    state = decode_customer(stage.table[customer_key(TENANT, "cust-1")])
    assert (state.value.orders, state.value.revenue) == (1, 120.0)


def test_a_resent_candidate_is_decided_once():
    stage = Stage()
    consenting(stage)
    for _ in range(2):  # the device partition replayed after a crash sends it again
        stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    assert stage.actions() == [("cart_abandoned", "phone/c1", "offer")]


def test_state_survives_a_restart_of_the_stage():
    stage = Stage()
    consenting(stage)
    stage.send(0, "candidate", DEADLINE, **candidate("phone/c1", DEADLINE, anon="phone"))
    stage.announce_all(DEADLINE + 1)
    stage.drain()
    restarted = CustomerProcessor(EXACT, stage.table.get, sources=2)
    stage.proc = restarted
    stage.send(1, "order", DEADLINE + MIN, oid="o-1", rev=80.0)
    stage.announce_all(DEADLINE + HOUR)
    stage.drain()
    assert stage.actions() == [("cart_abandoned", "phone/c1", "offer"), ("offer_cancelled", "phone/c1", "none")]


def test_customer_state_round_trips():
    state = CustomerState(TENANT, "cust-1", visitors=["a", "b"], consent=True, consent_ms=5, last_offer_ms=9,
                          offers=[{"trigger_id": "t", "expires_ms": 10}], orders=[[1, "c", ""]],
                          decided=[123], pains=[456])  # fmt: skip
    state.value.orders, state.value.revenue = 2, 50.5
    assert decode_customer(encode_customer(state)) == state
