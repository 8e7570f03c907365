"""Browsing: pages, searches, product lists and views, clicks and their friction.

Each function acts on a ``Visit`` at its current time and leaves its clock
at the last event it emitted. Probabilities are per page view; the module
docstring of ``pipeline.demo.storefront`` lists them all.
"""

from __future__ import annotations

from functools import lru_cache

from pipeline.demo.catalog import Product, Shop
from pipeline.demo.visit import Visit

__all__ = ["PATHS", "browse", "land", "view_category", "view_home", "view_product"]

P_RAGE = 0.025
P_DEAD = 0.02
P_CLICK = 0.12
P_ERROR_CLICK = 0.02  # product page: "add to cart" without a size
P_CLIENT_ERROR = 0.01  # category page: a script error shown to the visitor
P_UTURN = 0.04
P_ZERO_RESULTS = 0.18
P_INVALID_PAGE = 0.013  # a broken tag sends an event without a required property

PATHS = {
    "fr": {
        "home": ("/fr/", "Accueil"),
        "category": "/fr/c/{}",
        "product": "/fr/p/{}-{}",
        "search": ("/fr/recherche", "Recherche"),
        "cart": ("/fr/panier", "Mon panier"),
        "login": ("/fr/compte/connexion", "Connexion"),
        "steps": (("/fr/commande/informations", "Informations"), ("/fr/commande/livraison", "Livraison"),
                  ("/fr/commande/paiement", "Paiement")),
        "confirmation": ("/fr/commande/confirmation", "Merci pour votre commande"),
    },
    "en": {
        "home": ("/en/", "Home"),
        "category": "/en/c/{}",
        "product": "/en/p/{}-{}",
        "search": ("/en/search", "Search"),
        "cart": ("/en/cart", "Your basket"),
        "login": ("/en/account/login", "Sign in"),
        "steps": (("/en/checkout/information", "Information"), ("/en/checkout/shipping", "Shipping"),
                  ("/en/checkout/payment", "Payment")),
        "confirmation": ("/en/checkout/confirmation", "Thank you for your order"),
    },
}


@lru_cache(maxsize=None)
def _list_items(shop: Shop, slug: str, lang: str) -> tuple[dict, ...]:
    return tuple(
        {"product_id": p.product_id, "sku": p.sku, "name": p.names[lang], "price": p.price_cents / 100,
         "position": i + 1}
        for i, p in enumerate(shop.by_category[slug])
    )


def _click(
    v: Visit, selector: str, *, interactive: bool, responded: bool, x: int | None = None, y: int | None = None
) -> bool:
    rng = v.rng
    props = {
        "selector": selector,
        "x": x if x is not None else rng.randint(20, 1300),
        "y": y if y is not None else rng.randint(80, 2400),
        "interactive": interactive,
        "responded": responded,
    }
    return v.track("Element Clicked", props)


def error_click(v: Visit, error: str) -> bool:
    """A click the page answers with an error message (one of catalog.json's ``errors``)."""
    spec = v.plan.shop.raw["errors"][error]
    v.wait(2_000, 20_000)
    if not _click(v, spec["selector"], interactive=True, responded=True):
        return False
    v.wait(150, 600)
    props = {"kind": spec["kind"], "message": spec[v.lang], "selector": spec["selector"], "code": spec["code"]}
    ok = v.track("Error Shown", props)
    if ok:
        v.plan.tally.friction["error_click"] += 1
        v.plan.tally.friction["error_shown"] += 1
    return ok


def _rage_burst(v: Visit) -> None:
    rng = v.rng
    selector = rng.choice(v.plan.shop.raw["selectors"]["rage"])
    x, y = rng.randint(100, 1200), rng.randint(150, 1600)
    v.wait(2_000, 15_000)
    clicks = rng.randint(3, 5)
    ok = False
    for i in range(clicks):
        if i:
            v.wait(100, 240)  # at most 4 x 240 ms: the whole burst fits in one second
        ok = _click(v, selector, interactive=False, responded=False, x=x + rng.randint(-4, 4), y=y + rng.randint(-4, 4))
    if ok:
        v.plan.tally.friction["rage_click"] += 1


def _invalid_event(v: Visit) -> None:
    """A broken tag: a catalog event missing a required property (dead-lettered downstream)."""
    rng = v.rng
    v.wait(500, 5_000)
    kind = rng.randint(0, 2)
    if kind == 0:
        p = rng.choice(v.plan.shop.products)
        props = {"product_id": p.product_id, "sku": p.sku, "name": p.names[v.lang], "quantity": 1, "currency": "EUR"}
        v.track("Product Added", props, invalid="missing_property")  # no price
    elif kind == 1:
        v.track("Products Searched", {"results_count": rng.randint(0, 40)}, invalid="missing_property")  # no query
    else:
        props = {"x": rng.randint(20, 1300), "y": rng.randint(80, 2400), "interactive": True, "responded": True}
        v.track("Element Clicked", props, invalid="missing_property")  # no selector


def page_extras(v: Visit) -> None:
    """What may happen on any page after it loaded: clicks, friction, a broken tag."""
    rng = v.rng
    selectors = v.plan.shop.raw["selectors"]
    r = rng.random()
    if r < P_RAGE:
        _rage_burst(v)
    elif r < P_RAGE + P_DEAD:
        v.wait(2_000, 15_000)
        if _click(v, rng.choice(selectors["dead"]), interactive=True, responded=False):
            v.plan.tally.friction["dead_click"] += 1
    elif r < P_RAGE + P_DEAD + P_CLICK:
        v.wait(2_000, 15_000)
        _click(v, rng.choice(selectors["normal"]), interactive=True, responded=True)
    if rng.random() < P_INVALID_PAGE:
        _invalid_event(v)


def _maybe_uturn(v: Visit) -> bool:
    """Back to the previous page 2-9 s after arriving (counted as a u-turn).

    Only when nothing else happened on the page by then: a visitor who
    clicked around for longer is not turning back.
    """
    if v.prev is None or v.rng.random() >= P_UTURN:
        return False
    back_at = v.page_started + v.rng.randint(2_000, 9_000)
    if back_at <= v.t:
        return False
    path, title, search = v.prev
    # Back to the very page already shown (home after home) is no u-turn: nothing changed.
    same_page = (path, search) == (v.page_path, v.page_ctx.get("search"))
    v.t = back_at
    query = search.removeprefix("?q=").replace("+", " ") if search else None
    if v.page(path, title, search=query, slow=False) and not same_page:
        v.plan.tally.friction["u_turn"] += 1
    return True


def view_home(v: Visit) -> None:
    path, title = PATHS[v.lang]["home"]
    v.page(path, title)
    page_extras(v)


def view_category(v: Visit, slug: str) -> None:
    shop = v.plan.shop
    name = shop.category_names[slug][v.lang]
    v.page(PATHS[v.lang]["category"].format(slug), name)
    v.wait(120, 700)
    items = [dict(d) for d in _list_items(shop, slug, v.lang)]
    v.track("Product List Viewed", {"list_id": slug, "category": name, "products": items})
    if v.rng.random() < P_CLIENT_ERROR:
        spec = shop.raw["errors"]["client"]
        v.wait(300, 3_000)
        props = {"kind": spec["kind"], "message": spec[v.lang], "selector": spec["selector"], "code": spec["code"]}
        if v.track("Error Shown", props):
            v.plan.tally.friction["error_shown"] += 1
    page_extras(v)


def view_product(v: Visit, product: Product) -> None:
    shop = v.plan.shop
    name = product.names[v.lang]
    v.page(PATHS[v.lang]["product"].format(product.product_id, product.slugs[v.lang]), name)
    v.wait(120, 900)
    v.track("Product Viewed", product.base_properties(v.lang, shop.category_names[product.category][v.lang]))
    page_extras(v)
    if v.rng.random() < P_ERROR_CLICK:
        error_click(v, "product")


def search(v: Visit) -> None:
    """A search; a zero-result search is retried half of the time."""
    rng = v.rng
    queries = v.plan.shop.raw["searches"][v.lang]
    for attempt in range(2):
        zero = rng.random() < P_ZERO_RESULTS
        query = rng.choice(queries["zero" if zero else "found"])
        path, title = PATHS[v.lang]["search"]
        if attempt:
            v.to_next_page()
        v.page(path, f"{title} : {query}" if v.lang == "fr" else f"{title}: {query}", search=query)
        v.wait(150, 800)
        if v.track("Products Searched", {"query": query, "results_count": 0 if zero else rng.randint(1, 48)}) and zero:
            v.plan.tally.friction["zero_result_search"] += 1
        page_extras(v)
        if not zero or rng.random() < 0.5:
            return


def land(v: Visit) -> Product | None:
    """The first page of a visit; returns the product when it lands on one."""
    rng = v.rng
    shop = v.plan.shop
    r = rng.random()
    if r < 0.4:
        view_home(v)
    elif r < 0.7:
        view_category(v, rng.choice(shop.category_slugs))
    else:
        product = rng.choice(shop.products)
        view_product(v, product)
        return product
    return None


def _another(v: Visit, products: tuple[Product, ...], current: Product | None) -> Product:
    """A product from ``products`` other than the one on screen (nobody re-opens the same page)."""
    pick = v.rng.choice(products)
    return products[(products.index(pick) + 1) % len(products)] if pick is current else pick


def browse(v: Visit, pages: int, product: Product | None = None) -> Product | None:
    """Navigate ``pages`` more pages; returns the last product viewed, if the visit is on one."""
    rng = v.rng
    shop = v.plan.shop
    for _ in range(pages):
        v.to_next_page()
        r = rng.random()
        if product is not None and r < 0.4:
            product = _another(v, shop.by_category[product.category], product)
            view_product(v, product)
        elif r < 0.6:
            slug = rng.choice(shop.category_slugs)
            view_category(v, slug)
            product = None
            if rng.random() < 0.6:
                v.to_next_page()
                product = rng.choice(shop.by_category[slug])
                view_product(v, product)
        elif r < 0.75:
            product = None
            search(v)
        elif r < 0.9:
            product = _another(v, shop.products, product)
            view_product(v, product)
        else:
            product = None
            view_home(v)
        if _maybe_uturn(v):
            product = None  # back on the page before: whatever it showed, start afresh
    return product
