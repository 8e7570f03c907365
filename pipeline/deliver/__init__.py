"""``cxstream deliver``: post triggers from the triggers topic to webhooks (docs/delivery.md)."""
