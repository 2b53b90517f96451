"""The real-time lobby: what happens on the two WebSocket endpoints.

Layers, top to bottom (a knock moves down them once):

    endpoints     accept, first frame, read loop, clean-up (transport only)
    waiting_room  what a knock, a resume, a reply and a drop mean
    hub           this process's sockets per host and guest; fan-out
    broker        Redis pub/sub: subscriptions, readers, resubscribe
    connection    one socket's bounded send queue and writer

May import: ``notify``, ``hosts``, ``meetings``, ``access``, ``storage``,
``protocol``.
"""
