"""The demo storefront: seeded Segment traffic of a fictional shop, and a sender using the real SDK."""

from pipeline.demo.ledger import Expected
from pipeline.demo.storefront import Traffic, generate, iter_messages

__all__ = ["Expected", "Traffic", "generate", "iter_messages"]
