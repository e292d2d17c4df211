"""``orch api``: an HTTP API for programs and a live web console for people.

Both sit on the same client library and security model as the CLI: every call the API makes
is signed with the client certificate mapped to the caller's bearer token
(:mod:`orch.api.tokens`), so node policies (``cert=<name>``) limit each application exactly
as they limit people. Everything here needs the optional ``api`` extra
(``pip install orch[api]``: Starlette and uvicorn) so nodes that only run ``orch server``
stay lean.

Modules, one idea each: :mod:`~orch.api.tokens` (who is calling),
:mod:`~orch.api.errors` (JSON errors and bounded bodies), :mod:`~orch.api.jobs` (calls
running in the background and their replies as events), :mod:`~orch.api.openapi` (the
OpenAPI document from the DDLs), :mod:`~orch.api.routes` (one module per resource),
:mod:`~orch.api.app` (putting them together) and :mod:`~orch.api.serve` (the listener).
"""
