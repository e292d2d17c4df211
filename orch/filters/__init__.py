"""The built-in filter kinds and the compound filter language.

:mod:`orch.filters.terms` parses and matches single terms (``role=web``, ``/^web/``),
:mod:`orch.filters.compound` is the ``-S`` boolean language built on those terms, and
:mod:`orch.filters.builtin` registers the ``fact``, ``class``, ``identity``, ``agent`` and
``compound`` kinds with orch through the ``orch_filter_kinds`` hook.
"""
