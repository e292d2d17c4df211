"""Built-in fact sources, registered through the ``orch_fact_sources`` hook."""
