"""Cart and checkout: adds, removes, the three checkout steps, payment, the order.

Every event docs/detection.md calls cart or checkout activity is recorded on the
cart's trace when emitted (``_activity``); the order closes the cart.
Amounts are integer cents; French prices include VAT, so ``tax`` is the VAT
share of ``revenue`` (goods after discount) and ``total`` adds shipping.
"""

from __future__ import annotations

from pipeline.demo.browse import PATHS, error_click
from pipeline.demo.catalog import Product
from pipeline.demo.ledger import CartTrace
from pipeline.demo.visit import Cart, Visit

__all__ = ["add_item", "checkout", "new_cart", "remove_item", "view_cart"]

P_EXIT_STEP1 = (0.15, 0.05)  # indexed by `eager`: (first try, visitor who came back for the cart)
P_EXIT_STEP2 = (0.10, 0.03)
P_ADDRESS_ERROR = 0.06
P_SERVER_ERROR = 0.01
ERROR_CLICK_MS = 1_000  # an Error Shown this soon after a click makes an error click
P_LOOP = 0.05  # back to the cart from the shipping step, then checkout again
P_LOOP_AGAIN = 0.4  # ... and once more: the third view of a step is a checkout loop
LOOP_STEP_VIEWS = 3  # views of one checkout step in a session that make a checkout loop
LOOP_COUPON_DENIALS = 2  # Coupon Denied in a session that make a checkout loop
P_COUPON = 0.15
P_COUPON_OK = 0.55
P_EXIT_COUPON_DENIED = 0.35
P_PAY_FAIL = 0.13
P_PAY_FAIL_AGAIN = 0.35
P_GIVE_UP_AFTER_TWO_FAILS = 0.5
P_SWITCH_METHOD = 0.3  # after one failure; after two, everyone tries another method
P_REVENUE_SENT = 0.85  # else only `total`: the pipeline falls back on it


def new_cart(v: Visit) -> Cart:
    d = v.device
    cart_id = v.plan.short_id("cart_") if d.sends_cart_id else None
    cart = Cart(CartTrace(cart_id or f"{d.anonymous_id}#{len(v.person.carts)}"), cart_id)
    v.person.carts.append(cart)
    d.open_cart = cart
    return cart


def _activity(v: Visit, cart: Cart, event: str, props: dict) -> bool:
    if cart.cart_id is not None and event.startswith(("Product", "Cart")):
        props["cart_id"] = cart.cart_id
    ok = v.track(event, props)
    if ok:
        cart.trace.steps.append((v.t, cart.items))
    return ok


def _lines(v: Visit, cart: Cart) -> list[dict]:
    return [
        {"product_id": p.product_id, "sku": p.sku, "name": p.names[v.lang], "price": p.price_cents / 100, "quantity": q}
        for p, q in cart.lines.values()
    ]


def add_item(v: Visit, cart: Cart, product: Product) -> None:
    """Add ``product`` from its product page (the visit is on it)."""
    v.wait(4_000, 45_000)
    qty = 1 if v.rng.random() < 0.85 else 2
    cart.lines.setdefault(product.product_id, [product, 0])[1] += qty
    props = product.base_properties(v.lang, v.plan.shop.category_names[product.category][v.lang])
    props["quantity"] = qty
    _activity(v, cart, "Product Added", props)


def remove_item(v: Visit, cart: Cart, product_id: str) -> None:
    v.wait(3_000, 20_000)
    _, qty = cart.lines.pop(product_id)
    _activity(v, cart, "Product Removed", {"product_id": product_id, "quantity": qty})


def view_cart(v: Visit, cart: Cart, *, navigate: bool = True) -> None:
    """Open the cart page; ``navigate=False`` when it is the first page of a visit."""
    if navigate:
        v.to_next_page()
    v.page(*PATHS[v.lang]["cart"])
    v.wait(150, 700)
    _activity(v, cart, "Cart Viewed", {"products": _lines(v, cart)})


def _payment_failure(v: Visit, cart: Cart, checkout_id: str, method: str, fails: int) -> None:
    rng, tally = v.rng, v.plan.tally
    reason = rng.choice(v.plan.shop.raw["decline_codes"])
    v.wait(3_000, 20_000)
    v.track("Element Clicked", {"selector": "button.pay-now", "x": rng.randint(400, 900), "y": rng.randint(700, 1400),
                                "interactive": True, "responded": True})
    clicked_ms = v.t
    v.wait(800, 4_000)
    if _activity(v, cart, "Payment Failed", {"checkout_id": checkout_id, "payment_method": method, "reason": reason}):
        tally.friction["payment_failed"] += 1
        if fails == 2:
            tally.friction["payment_failed_x2"] += 1
    v.wait(100, 400)
    spec = v.plan.shop.raw["errors"]["payment"]
    shown = {"kind": "payment", "message": spec[v.lang], "selector": spec["selector"], "code": reason}
    if v.track("Error Shown", shown):
        tally.friction["error_shown"] += 1
        # The decline shows 0.9-4.4 s after the pay click: an error click only within the 1 s of the definition.
        if v.t - clicked_ms <= ERROR_CLICK_MS:
            tally.friction["error_click"] += 1


def _step_viewed(v: Visit, cart: Cart, ids: dict, step: int) -> None:
    if _activity(v, cart, "Checkout Step Viewed", {**ids, "step": step}):
        views = v.step_views[step] = v.step_views.get(step, 0) + 1
        if views == LOOP_STEP_VIEWS:
            v.plan.tally.friction["checkout_loop"] += 1


def _coupon(v: Visit) -> tuple[str | None, int, bool, bool]:
    """(code applied, discount %, free shipping, visitor gives up) for an optional coupon try."""
    rng, coupons = v.rng, v.plan.shop.raw["coupons"]
    if rng.random() >= P_COUPON:
        return None, 0, False, False
    v.wait(5_000, 40_000)
    if rng.random() < P_COUPON_OK:
        code, pct, free_shipping = rng.choice(coupons["applied"])
        v.track("Coupon Applied", {"coupon_id": code})
        return code, pct, free_shipping, False
    code, reason = rng.choice(coupons["denied"])
    if v.track("Coupon Denied", {"coupon_id": code, "reason": reason}):
        v.coupons_denied += 1
        if v.coupons_denied == LOOP_COUPON_DENIALS:
            v.plan.tally.friction["checkout_loop"] += 1
    return None, 0, False, rng.random() < P_EXIT_COUPON_DENIED


def checkout(v: Visit, cart: Cart, *, eager: bool = False, loops: int = 0) -> bool:
    """Run the checkout of ``cart``; True when the visitor placed the order, False when they left.

    ``loops``: how many times this visit already went back to the cart from
    the shipping step (at most twice).
    """
    rng, plan, raw = v.rng, v.plan, v.plan.shop.raw
    steps = PATHS[v.lang]["steps"]
    checkout_id = plan.short_id("chk_")
    ids = {"checkout_id": checkout_id}

    v.to_next_page()
    v.page(*steps[0])
    v.wait(150, 700)
    started = {**ids, "value": cart.value_cents / 100, "currency": "EUR", "products": _lines(v, cart)}
    if cart.cart_id is not None:
        started["cart_id"] = cart.cart_id
    _activity(v, cart, "Checkout Started", started)
    v.wait(50, 300)
    _step_viewed(v, cart, ids, 1)
    if v.device.user_id is None:  # guest checkout asks for an e-mail: the visitor becomes known
        v.wait(15_000, 90_000)
        v.identify(plan.customer(v.person))
    if rng.random() < P_ADDRESS_ERROR:
        error_click(v, "address")
    if rng.random() < P_EXIT_STEP1[eager]:
        return False
    v.wait(5_000, 60_000)
    _activity(v, cart, "Checkout Step Completed", {**ids, "step": 1})

    v.to_next_page()
    v.page(*steps[1])
    v.wait(150, 700)
    _step_viewed(v, cart, ids, 2)
    if rng.random() < P_SERVER_ERROR:
        error_click(v, "server")
    if loops < 2 and rng.random() < (P_LOOP if loops == 0 else P_LOOP_AGAIN):
        view_cart(v, cart)
        return checkout(v, cart, eager=eager, loops=loops + 1)
    if rng.random() < P_EXIT_STEP2[eager]:
        return False
    shipping_method, shipping_eur = rng.choice(raw["shipping_methods"])
    v.wait(5_000, 45_000)
    _activity(v, cart, "Checkout Step Completed", {**ids, "step": 2, "shipping_method": shipping_method})
    coupon, pct, free_shipping, gives_up = _coupon(v)
    if gives_up:
        return False

    v.to_next_page()
    v.page(*steps[2])
    v.wait(150, 700)
    _step_viewed(v, cart, ids, 3)
    method = rng.choice(raw["payment_methods"])
    v.wait(10_000, 90_000)
    _activity(v, cart, "Payment Info Entered", {**ids, "payment_method": method})
    fails = 0
    while fails < 3 and rng.random() < (P_PAY_FAIL if fails == 0 else P_PAY_FAIL_AGAIN):
        fails += 1
        _payment_failure(v, cart, checkout_id, method, fails)
        if fails == 2:
            v.person.payment_troubles.append(v.t)
            if rng.random() < P_GIVE_UP_AFTER_TWO_FAILS:
                return False
        if fails >= 2 or rng.random() < P_SWITCH_METHOD:
            method = rng.choice([m for m in raw["payment_methods"] if m != method])
        v.wait(10_000, 60_000)
        _activity(v, cart, "Payment Info Entered", {**ids, "payment_method": method})
    v.wait(2_000, 10_000)
    _activity(v, cart, "Checkout Step Completed", {**ids, "step": 3, "payment_method": method})

    v.to_next_page()
    v.page(*PATHS[v.lang]["confirmation"])
    v.wait(200, 900)
    _order(v, cart, checkout_id, shipping_method, round(shipping_eur * 100), coupon, pct, free_shipping)
    return True


def _order(v: Visit, cart: Cart, checkout_id: str, shipping_method: str, shipping_cents: int,
           coupon: str | None, pct: int, free_shipping: bool) -> None:
    plan, raw = v.plan, v.plan.shop.raw
    subtotal = cart.value_cents
    discount = subtotal * pct // 100
    revenue = subtotal - discount
    free = free_shipping or (shipping_method != "express" and revenue >= round(raw["free_shipping_from"] * 100))
    shipping = 0 if free else shipping_cents
    tax = round(revenue * raw["vat_rate"] / (1 + raw["vat_rate"]))
    total = revenue + shipping
    order_id = plan.short_id("ord_")
    props = {
        "order_id": order_id, "checkout_id": checkout_id, "total": total / 100, "shipping": shipping / 100,
        "tax": tax / 100, "discount": discount / 100, "currency": "EUR", "products": _lines(v, cart),
    }
    if cart.cart_id is not None:
        props["cart_id"] = cart.cart_id
    if coupon is not None:
        props["coupon"] = coupon
    revenue_sent = v.rng.random() < P_REVENUE_SENT
    if revenue_sent:
        props["revenue"] = revenue / 100
    cart.closed = True
    v.device.open_cart = None
    if v.track("Order Completed", props):
        plan.tally.orders += 1
        plan.tally.revenue_cents += revenue if revenue_sent else total
        cart.trace.order_ms = v.t
        v.person.orders.append((v.t, order_id))
