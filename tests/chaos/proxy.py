"""A fault-injecting TCP proxy on 127.0.0.1, between Foyer and Redis.

These machines have no ``tc netem``, so the chaos suite fails the link itself:
the proxy runs its own event loop in a thread (the test's loop may block in
``spawn_foyer``), forwards bytes both ways, and on request adds delay, stalls
one direction, black-holes the link, resets every connection, or resets a
connection right after a command matching some bytes was answered by Redis (the
command ran; its reply is lost: the ambiguous case a blind retry gets wrong).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from server.ops.embedded import free_port

T = TypeVar("T")

UP = "up"  # Foyer -> Redis
DOWN = "down"  # Redis -> Foyer
CHUNK = 65536


class _Link:
    """One proxied connection: two sockets, two pumps."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def reset(self) -> None:
        for writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close sends RST, not FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    """``tls``: the proxy's side speaks TLS with this context (a ``rediss://``
    Redis, which the embedded Valkey, built without TLS, cannot be)."""

    def __init__(self, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.target_port = target_port
        self.tls = tls
        self.port = free_port()
        self.delay = 0.0
        self._open = {UP: asyncio.Event(), DOWN: asyncio.Event()}  # set = flowing
        self._links: set[_Link] = set()
        self._reset_after: tuple[bytes, asyncio.Future[None]] | None = None
        self._hold: tuple[bytes, asyncio.Future[None], asyncio.Event] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.resets = 0

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        for event in self._open.values():
            event.set()
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, ssl=self.tls
        )

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        self._links.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _call(self, fn: Callable[[], None]) -> None:
        async def call() -> None:
            fn()

        self._run(call())

    # -- faults (callable from any thread) ----------------------------------------------

    def set_delay(self, seconds: float) -> None:
        """Hold every chunk this long before forwarding it (both directions)."""
        self.delay = seconds

    def stall(self, direction: str) -> None:
        """Stop forwarding ``UP`` or ``DOWN`` (bytes wait in the proxy)."""
        self._call(self._open[direction].clear)

    def blackhole(self) -> None:
        """Nothing flows either way, new connections included (they are accepted
        and then hear nothing): a dead link, not a refused one."""
        self.stall(UP)
        self.stall(DOWN)

    def heal(self) -> None:
        """Undo stalls, black hole and delay: what waited is forwarded."""
        self.delay = 0.0
        self._call(self._open[UP].set)
        self._call(self._open[DOWN].set)

    def reset_all(self) -> int:
        """RST every open connection now (both sides); returns how many."""

        async def reset() -> int:
            links = list(self._links)
            for link in links:
                link.reset()
            self._links.clear()
            self.resets += len(links)
            return len(links)

        return self._run(reset())

    def reset_after_reply_to(self, marker: bytes) -> asyncio.Future[None]:
        """Arm a one-shot fault: the next command whose bytes contain ``marker``
        goes to Redis; once Redis answered, the answer is dropped and the
        connection reset. The returned (thread-safe to poll) future completes then."""

        async def arm() -> asyncio.Future[None]:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._reset_after = (marker, fut)
            return fut

        return self._run(arm())

    def hold_reply_to(self, marker: bytes) -> tuple[asyncio.Future[None], asyncio.Event]:
        """Arm a one-shot fault: the next command whose bytes contain ``marker``
        goes to Redis, but what Redis answers on that connection waits in the
        proxy until ``release`` (other connections flow). The future completes
        when the command went by."""

        async def arm() -> tuple[asyncio.Future[None], asyncio.Event]:
            hold = (marker, self._loop.create_future(), asyncio.Event())
            self._hold = hold
            return hold[1], hold[2]

        return self._run(arm())

    def release(self, gate: asyncio.Event) -> None:
        self._call(gate.set)

    async def until(self, fut: asyncio.Future[None], timeout: float = 30.0) -> None:
        """Wait, from any event loop, until the proxy's ``fut`` completes."""

        async def wait() -> None:
            await asyncio.wait_for(asyncio.shield(fut), timeout)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wait(), self._loop))

    def fired(self, fut: asyncio.Future[None]) -> bool:
        return self._run(self._done(fut))

    @staticmethod
    async def _done(fut: asyncio.Future[None]) -> bool:
        return fut.done()

    # -- forwarding ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()  # Redis is down: so is the link
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        armed: list[asyncio.Future[None]] = []  # set when this link carried the marker
        gates: list[asyncio.Event] = []  # answers on this link wait for these
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, UP, link, armed, gates)),
            asyncio.create_task(self._pump(up_reader, writer, DOWN, link, armed, gates)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if link in self._links:
            self._links.discard(link)
            for w in (writer, up_writer):
                w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        link: _Link,
        armed: list[asyncio.Future[None]],
        gates: list[asyncio.Event],
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    return
                await self._open[direction].wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._open[direction].wait()
                if direction == UP and self._reset_after and self._reset_after[0] in data:
                    armed.append(self._reset_after[1])
                    self._reset_after = None
                if direction == UP and self._hold and self._hold[0] in data:
                    gates.append(self._hold[2])
                    if not self._hold[1].done():
                        self._hold[1].set_result(None)
                    self._hold = None
                if direction == DOWN:
                    for gate in gates:
                        await gate.wait()
                if direction == DOWN and armed:
                    # Redis answered the marked command: lose the answer, reset both ends.
                    self._links.discard(link)
                    link.reset()
                    self.resets += 1
                    for fut in armed:
                        if not fut.done():
                            fut.set_result(None)
                    return
                writer.write(data)
                await writer.drain()
