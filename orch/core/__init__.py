"""The small core: hook specifications, plugin loading, the wire protocol, server and client.

Nothing in here names a concrete plugin; transports, agents, filters, fact sources, discovery
methods, security providers and CLI commands all arrive through :mod:`orch.core.hookspecs`.
"""
