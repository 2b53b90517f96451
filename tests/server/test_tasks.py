"""``running_loop``: the running loop without a system call, right across
loops that follow each other in one thread and loops in other threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
import uvloop

from server.tasks import running_loop


def test_it_is_the_running_loop_of_each_loop_in_turn() -> None:
    async def which() -> bool:
        return running_loop() is asyncio.get_running_loop()

    assert asyncio.run(which())
    assert uvloop.run(which())  # a second loop in the same thread
    assert asyncio.run(which())


def test_outside_a_loop_it_raises_as_get_running_loop_does() -> None:
    async def touch() -> None:
        running_loop()

    asyncio.run(touch())  # remembers a loop that has stopped since
    with pytest.raises(RuntimeError):
        running_loop()


def test_each_thread_gets_its_own() -> None:
    seen: dict[str, bool] = {}
    started = threading.Barrier(2)

    def in_thread(name: str) -> None:
        async def check() -> None:
            started.wait(timeout=5)  # both loops are running now
            await asyncio.sleep(0.01)
            seen[name] = running_loop() is asyncio.get_running_loop()

        asyncio.run(check())

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == {"a": True, "b": True}
