"""cxstream: the collector, the detection core, the Faust worker and the pipeline runner."""
