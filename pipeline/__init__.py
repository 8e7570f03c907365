"""cxstream: the collector (edge), the wire formats, the pure detection core, the Faust runtime, the supervisor and the tools."""
