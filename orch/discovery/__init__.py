"""Built-in discovery methods, registered through the ``orch_discovery_methods`` hook."""
