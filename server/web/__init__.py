"""The web: the HTTP API (``api``), its OpenAPI document (``openapi``), the
browser pages (``pages``), OAuth's endpoints and consent page (``oauth``),
``GET /metrics`` (``prometheus``) and the one
table that maps errors to HTTP statuses (``errors``).

May import: ``lobby`` (nothing yet), ``hosts``, ``access``, ``storage``,
``metrics``, ``protocol``. Handlers reach the parts through ``request.app.state.node``.
"""
