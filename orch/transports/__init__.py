"""Built-in transports. Each is a plugin registered through the ``orch_transports`` hook."""
