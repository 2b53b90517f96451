"""Foyer's server, grouped by concern; each subpackage says what it owns and
what it may import. Read it top-down, as a knock travels:

    ops/        the ``foyer`` CLI, configuration, the embedded Valkey, the
                HTTP protocol that hands WebSocket upgrades to the gate
    app.py      the ASGI entry: the Starlette app and the WebSocket gate
    node.py     the one place that builds the parts and wires them together
    web/        the HTTP API, its OpenAPI document, the browser pages
    lobby/      the real-time lobby: upgrade (the gate) -> endpoints ->
                waiting room -> hub / broker -> connection (one socket)
    notify/     what reaches a host who is not looking (email)
    hosts/      host settings: validated partial updates
    meetings/   the meeting provider (ids and URLs; Foyer carries no media)
    access/     who may connect: tokens, origins, client addresses
    storage/    Redis: the store, its Lua scripts, the batcher, the client
    metrics.py  Prometheus metrics; a leaf any layer may record into
    ids.py      random ids for the hot path (OS randomness read in blocks)
    i18n.py     the catalogues (en, fr, de, es): the pages and the emails
    browser_files.py  where the browser files and catalogues are

Imports go down this list, never up (``protocol`` is below everything), and a
module never imports a sibling subpackage's internals that its docstring does
not name. ``tests/server/test_layout.py`` holds the rule.
"""
