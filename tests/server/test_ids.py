"""Hot-path ids: OS randomness read in blocks, each byte handed out once, and
never shared with a forked child."""

from __future__ import annotations

import os
import re

from server import ids
from server.ids import RandomPool


def test_tokens_have_the_secrets_module_shapes() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", ids.token_hex(8))
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", ids.token_urlsafe(12))
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", ids.token_urlsafe(24))


def test_no_byte_is_handed_out_twice_across_blocks() -> None:
    pool = RandomPool(block=64)
    taken = [pool.take(24) for _ in range(200)]  # crosses many block ends
    assert all(len(t) == 24 for t in taken)
    assert len(set(taken)) == len(taken)
    assert len(pool.take(100)) == 100  # more than a block at once


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids.token_hex(8)  # the parent holds a block read before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next id and leave at once
        os.close(read)
        os.write(write, ids.token_hex(8).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{16}", child)
    assert child != ids.token_hex(8)  # the parent's next id, from the same block
