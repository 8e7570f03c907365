"""One person's whole plan: first visit, return visits, then support and surveys.

``plan_person`` runs once per simulated person, in arrival order, and
returns every message it kept (within the span) with its event time.
"""

from __future__ import annotations

from pipeline.demo.browse import PATHS, browse, land, view_product
from pipeline.demo.catalog import Product
from pipeline.demo.checkout import add_item, checkout, new_cart, remove_item, view_cart
from pipeline.demo.ledger import MIN_RETURN_GAP_MS
from pipeline.demo.support import plan_support
from pipeline.demo.visit import Device, Person, Plan, Visit

__all__ = ["plan_person"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS

LOCALES = (("fr-FR", "fr", 0.60), ("en-GB", "en", 0.25), ("en-US", "en", 0.15))
P_SENDS_CART_ID = 0.85
P_HAS_ACCOUNT = 0.12
INTENT_BOUNCE, INTENT_BROWSE = 0.35, 0.78  # cumulative: the rest (22%) come to shop
P_NEWSLETTER = 0.03  # a browsing visitor signs up (identify, consent given)
P_SECOND_ITEM, P_THIRD_ITEM = 0.35, 0.15
P_EMPTY = 0.04  # a one-item cart whose item is removed again (only where cart_id is sent)
P_REMOVE = 0.2
P_VIEW_CART = 0.7
P_CHECKOUT = (0.5, 0.8)  # (first visit, repeat customer)
P_RECOVER = 0.22  # an abandoned cart's owner comes back for it
RECOVER_AFTER_MS = (MIN_RETURN_GAP_MS, 8 * HOUR_MS)
P_REPEAT = (0.3, 0.15)  # a customer comes back to shop again (first, second time)
REPEAT_AFTER_MS = (2 * HOUR_MS, 30 * HOUR_MS)
P_REPEAT_SHOPS = 0.6  # else the returning customer only browses
P_NEW_DEVICE = 0.3  # a repeat visit from another device (new anonymousId, logs in)


def _new_device(plan: Plan) -> Device:
    rng, raw = plan.rng, plan.shop.raw
    # Documentation address ranges (RFC 5737): realistic-looking, never a real visitor's.
    net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return Device(
        anonymous_id=plan.uuid(),
        user_agent=rng.choice(raw["user_agents"]),
        ip=f"{net}.{rng.randint(1, 254)}",
        sends_cart_id=rng.random() < P_SENDS_CART_ID,
    )


def _new_person(plan: Plan) -> Person:
    rng = plan.rng
    r = rng.random()
    for locale, lang, share in LOCALES:
        if r < share:
            break
        r -= share
    return Person(locale=locale, lang=lang, has_account=rng.random() < P_HAS_ACCOUNT)


def _login(v: Visit) -> None:
    v.page(*PATHS[v.lang]["login"])
    v.wait(8_000, 40_000)
    v.identify(v.plan.customer(v.person))


def _shop(v: Visit, product: Product | None, *, repeat: bool) -> None:
    """Browse on from the landing page (``product`` when it shows one), fill a cart, check out or leave."""
    rng = v.rng
    product = browse(v, rng.randint(0, 3), product)
    cart = new_cart(v)
    wanted = 1 + (rng.random() < P_SECOND_ITEM) + (rng.random() < P_THIRD_ITEM)
    for _ in range(wanted):
        # At most 3 browsing steps between two adds keep in-visit cart gaps far below 30 minutes.
        if product is None or product.product_id in cart.lines:
            product = browse(v, rng.randint(0, 2))
            if product is None or product.product_id in cart.lines:
                v.to_next_page()
                product = rng.choice([p for p in v.plan.shop.products if p.product_id not in cart.lines])
                view_product(v, product)
        add_item(v, cart, product)
    if len(cart.lines) == 1 and cart.cart_id is not None and rng.random() < P_EMPTY:
        view_cart(v, cart)
        remove_item(v, cart, next(iter(cart.lines)))
        cart.closed = True
        v.device.open_cart = None
        browse(v, rng.randint(0, 2))
        return
    if rng.random() < P_VIEW_CART:
        view_cart(v, cart)
        if len(cart.lines) >= 2 and rng.random() < P_REMOVE:
            remove_item(v, cart, rng.choice(list(cart.lines)))
    if rng.random() < P_CHECKOUT[repeat]:
        checkout(v, cart)
    else:
        browse(v, rng.randint(0, 2))


def _first_visit(v: Visit) -> None:
    rng = v.rng
    if v.person.has_account:
        _login(v)
        v.to_next_page()
    product = land(v)
    r = rng.random()
    if r < INTENT_BOUNCE:
        return
    if r < INTENT_BROWSE:
        browse(v, rng.randint(1, 7), product)
        if v.device.user_id is None and rng.random() < P_NEWSLETTER:
            v.wait(5_000, 30_000)
            v.identify(v.plan.customer(v.person, consent=True))
        return
    _shop(v, product, repeat=False)


def _recovery_visit(v: Visit) -> None:
    """Back for the abandoned cart (from a reminder e-mail, or by memory), straight to the cart."""
    cart = v.device.open_cart
    assert cart is not None
    view_cart(v, cart, navigate=False)
    checkout(v, cart, eager=True)


def plan_person(plan: Plan, t0: int) -> list[tuple[int, dict]]:
    """Plan one person arriving at ``t0``; returns their kept (event time, message) pairs."""
    rng = plan.rng
    plan.out = []
    person = _new_person(plan)
    device = _new_device(plan)
    referrer = rng.choice(plan.shop.raw["referrers"])
    v = Visit(plan, person, device, t0, referrer)
    _first_visit(v)
    repeats = 0
    while v.last_emit_ms is not None:
        cart = device.open_cart
        if cart is not None and not cart.closed:
            if rng.random() >= P_RECOVER:
                break
            start = v.t + rng.randint(*RECOVER_AFTER_MS)
            # Reminder e-mails go only to customers who consented; others come back by themselves.
            reminded = person.customer is not None and person.customer.consent
            referrer = "https://newsletter.maison-lumiere.example/" if reminded else ""
            v = Visit(plan, person, device, start, referrer)
            _recovery_visit(v)
            continue
        if not person.orders or repeats >= len(P_REPEAT) or rng.random() >= P_REPEAT[repeats]:
            break
        repeats += 1
        if rng.random() < P_NEW_DEVICE:
            device = _new_device(plan)
        start = v.t + rng.randint(*REPEAT_AFTER_MS)
        v = Visit(plan, person, device, start, rng.choice(plan.shop.raw["referrers"]))
        if device.user_id is None:
            _login(v)
            v.to_next_page()
        product = land(v)
        if rng.random() < P_REPEAT_SHOPS:
            _shop(v, product, repeat=True)
        else:
            browse(v, rng.randint(1, 5), product)
    plan_support(plan, person, t0)
    for cart in person.carts:
        plan.tally.close_cart(cart.trace)
    return plan.out
