"""cxstream: the collector (edge), the wire formats, the pure detection core, the Faust runtime, the supervisor and the tools."""

from pipeline import native as _native

_native.install()  # compiled copies of the hot path, only while they match their source (pipeline/native.py)
