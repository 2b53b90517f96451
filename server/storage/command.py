"""A command queued for Redis, and how a batch of them is written."""

from __future__ import annotations

import asyncio
from typing import Any

from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection


class Command:
    """One command, the future its caller awaits, and whether it may be sent
    again once it may have run (``batcher``'s module docstring)."""

    __slots__ = ("args", "fut", "reloaded", "replayable")

    def __init__(self, args: tuple[Any, ...], fut: asyncio.Future[Any], replayable: bool) -> None:
        self.args = args
        self.fut = fut
        self.replayable = replayable
        self.reloaded = False  # sent again once after a NOSCRIPT: not twice


def pack_commands(conn: AbstractConnection, commands: list[tuple[Any, ...]]) -> bytes | list[bytes]:
    """The batch in RESP, packed by hiredis in C (redis-py's asyncio connection
    packs in Python: ~4% of a guest process's CPU at 500 visits/s). A command
    that names two words in one (``"SCRIPT LOAD"``) is split as redis-py does;
    an argument hiredis cannot pack goes through redis-py, which says why."""
    try:
        return b"".join(
            pack_command((*args[0].split(), *args[1:]) if " " in args[0] else args)
            for args in commands
        )
    except TypeError:
        return conn.pack_commands(commands)
