"""The analysts' live dashboard (``cxstream dashboard``, also served by ``cxstream up``); docs/dashboard.md."""
