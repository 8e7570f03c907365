"""The demo shop's fixed data: products, categories, searches, texts.

Loaded once from ``pipeline/demo/data/*.json`` (shipped as package data).
Prices are kept in integer cents so totals and the ground-truth revenue add
up exactly; messages carry them as EUR floats with two decimals.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["Product", "Shop", "load_shop"]

DATA_DIR = Path(__file__).with_name("data")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    sku: str
    category: str
    price_cents: int
    names: dict[str, str]  # lang ("fr" or "en") -> name
    slugs: dict[str, str]

    def base_properties(self, lang: str, category_name: str) -> dict[str, Any]:
        """The E-commerce Spec product fields, in the visitor's language."""
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.names[lang],
            "category": category_name,
            "price": self.price_cents / 100,
            "currency": "EUR",
        }


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: used as a cache key
class Shop:
    name: str
    base_url: str
    products: tuple[Product, ...]
    by_category: dict[str, tuple[Product, ...]]
    category_slugs: tuple[str, ...]
    category_names: dict[str, dict[str, str]]  # slug -> lang -> display name
    raw: dict[str, Any]  # the rest of catalog.json (searches, coupons, selectors, ...)
    support: dict[str, Any]  # support.json: ticket texts, agent replies, survey comments


@cache
def load_shop() -> Shop:
    """Read the shop data; cached, so every generator shares one immutable copy."""
    raw = json.loads((DATA_DIR / "catalog.json").read_text(encoding="utf-8"))
    support = json.loads((DATA_DIR / "support.json").read_text(encoding="utf-8"))
    products = tuple(
        Product(
            product_id=p["id"],
            sku=p["sku"],
            category=p["category"],
            price_cents=round(p["price"] * 100),
            names={"fr": p["fr"], "en": p["en"]},
            slugs={"fr": _slug(p["fr"]), "en": _slug(p["en"])},
        )
        for p in raw["products"]
    )
    category_names = {c["slug"]: {"fr": c["fr"], "en": c["en"]} for c in raw["categories"]}
    by_category = {slug: tuple(p for p in products if p.category == slug) for slug in category_names}
    return Shop(
        name=raw["shop"]["name"],
        base_url=raw["shop"]["base_url"],
        products=products,
        by_category=by_category,
        category_slugs=tuple(category_names),
        category_names=category_names,
        raw=raw,
        support=support,
    )
