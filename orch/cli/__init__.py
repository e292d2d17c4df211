"""The ``orch`` command line. It only wires options to the library; no logic lives here."""
