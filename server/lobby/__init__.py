"""The real-time lobby: what happens on the two WebSocket endpoints.

Layers, top to bottom (a knock moves down them once):

    upgrade       the handshake on the parsed HTTP request: route, checks, 101
    endpoints     first frame, read loop, clean-up (one task per socket)
    waiting_room  what a knock, a resume, a reply and a drop mean
    hub           this process's sockets per host and guest; fan-out
    broker        Redis pub/sub: subscriptions, readers, resubscribe
    connection    one socket on its transport: writes, inbox, bounds, keep-alive

May import: ``notify``, ``hosts``, ``meetings``, ``access``, ``storage``,
``protocol``.
"""
