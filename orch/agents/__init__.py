"""Built-in agents, registered through the ``orch_agents`` hook like any plugin's."""
