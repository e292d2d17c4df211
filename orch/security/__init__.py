"""Built-in security providers, registered through the ``orch_security_providers`` hook."""
