"""Random ids for the hot path, from the OS's randomness read in blocks.

``secrets.token_hex`` asks the kernel (``getrandom``) on every call; a visit
takes four such ids (the socket's, the guest's, its resume secret, the
reply's operation id): a system call each, 2.8% of a guest process's samples
in a py-spy profile at 1,500 visits/s (py-spy overstates system calls; paired
runs could not see the change through the noise). The bytes are the same
``os.urandom`` bytes, read 4 KiB at a time and handed out once each. A
forked child (``foyer serve --workers``) drops what its parent had read, so
no two processes share a byte.
"""

from __future__ import annotations

import base64
import os

BLOCK = 4096


class RandomPool:
    """``os.urandom`` in blocks: each byte is handed out once."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        at = self._at
        if at + n > len(self._buffer):
            self._buffer = os.urandom(max(self._block, n))
            at = 0
        self._at = at + n
        return self._buffer[at : at + n]

    def forget(self) -> None:
        """Drop what was read (after a fork: the parent holds the same bytes)."""
        self._buffer = b""
        self._at = 0


_POOL = RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def token_hex(nbytes: int) -> str:
    """As ``secrets.token_hex``."""
    return _POOL.take(nbytes).hex()


def token_urlsafe(nbytes: int) -> str:
    """As ``secrets.token_urlsafe``."""
    return base64.urlsafe_b64encode(_POOL.take(nbytes)).rstrip(b"=").decode("ascii")
