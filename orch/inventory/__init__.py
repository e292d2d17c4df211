"""Knowing the fleet without asking it: registration, inventory stores, discovery from the
store, PuppetDB discovery and job history — each a plugin on orch's ordinary hooks."""
