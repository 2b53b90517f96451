"""Operations: the ``foyer`` command, every ``FOYER_*`` setting, and the
embedded Valkey that ``foyer serve`` starts when no Redis URL is given.

May import: everything below it (``server.app`` to serve, ``server.storage``
to create the demo host).
"""
