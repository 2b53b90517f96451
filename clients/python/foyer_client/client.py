"""A thin driver around ``protocol``: frames in, typed messages out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.codec import CODECS, JSON, MSGPACK, Codec
from protocol.messages import TO_GUEST, TO_HOST, Message, Waiting, Welcome, parse

DEFAULT_TIMEOUT = 10.0


class ClientError(Exception):
    """The server answered with ``error`` or closed the connection."""

    def __init__(self, code: str, message: str = "", close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.close_code = close_code


class _Client:
    """Shared machinery: one socket, one reader task, a queue of typed messages."""

    table: dict[str, type[Message]] = {}

    def __init__(
        self,
        url: str,
        *,
        codec: str = "msgpack",
        origin: str | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.url = url
        self.codec: Codec = CODECS[MSGPACK if codec == "msgpack" else JSON]
        self.origin = origin
        self.ws: ClientConnection | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue(queue_size)
        self._reader: asyncio.Task[None] | None = None
        self._refs = itertools.count(1)
        self._acks: dict[Any, asyncio.Future[Message]] = {}
        self._sends: set[asyncio.Future[None]] = set()

    async def _open(self) -> None:
        headers = {"Origin": self.origin} if self.origin else None
        self.ws = await connect(
            self.url,
            subprotocols=[self.codec.name],  # type: ignore[list-item]
            additional_headers=headers,
            max_size=1 << 20,
            compression=None,
            open_timeout=DEFAULT_TIMEOUT,
        )
        self._reader = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                message = parse(self.codec.decode(frame), self.table)
                ref = message.reference
                fut = self._acks.pop(ref, None) if ref is not None else None
                if fut is not None and not fut.done():
                    fut.set_result(message)
                    continue
                self._inbox.put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            if self.ws is not None and self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(ClientError("closed", close_code=self.close_code))
            self._acks.clear()
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(None)

    async def close(self) -> None:
        for task in list(self._sends):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sending ---------------------------------------------------------------------

    async def send_raw(self, frame: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def send(self, **fields: Any) -> None:
        await self.send_raw(self.codec.encode(fields))

    def send_nowait(self, **fields: Any) -> None:
        """Fire and forget (load loops): schedules the send on the socket."""
        task = asyncio.ensure_future(self.send(**fields))
        self._sends.add(task)  # owned here, cancelled by ``close``
        task.add_done_callback(self._sends.discard)

    async def request(self, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> Message:
        """Send with a fresh ``ref`` and wait for its ``ack`` (or reply)."""
        ref = next(self._refs)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._acks[ref] = fut
        await self.send(ref=ref, **fields)
        async with asyncio.timeout(timeout):
            reply = await fut
        if reply.type == "error":
            raise ClientError(getattr(reply, "code", "error"), getattr(reply, "message", ""))
        return reply

    # -- receiving --------------------------------------------------------------------

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message; ``ClientError('closed')`` once the socket closed."""
        async with asyncio.timeout(timeout):
            message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)
            raise ClientError("closed", self.close_reason, self.close_code)
        return message

    async def wait_for(self, *types: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Skip messages until one of ``types`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout=timeout)
                if message.type in types:
                    return message

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait for the server to close; returns the close code."""
        if self._reader is not None:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._reader)
        return self.close_code

    def pending(self) -> list[Message]:
        """Messages received and not read yet (without waiting)."""
        out: list[Message] = []
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is None:
                self._inbox.put_nowait(None)
                break
            out.append(item)
        return out


class HostClient(_Client):
    """A host device: says hello, gets ``welcome``, answers knocks."""

    table = TO_HOST

    def __init__(self, base_url: str, token: str, **kw: Any) -> None:
        super().__init__(base_url.rstrip("/") + "/ws/host", **kw)
        self.token = token
        self.welcome: Welcome

    async def __aenter__(self) -> HostClient:
        await self._open()
        await self.send(type="hello", token=self.token)
        first = await self.recv()
        if not isinstance(first, Welcome):
            await self.close()
            raise ClientError(
                getattr(first, "code", first.type), getattr(first, "message", ""), self.close_code
            )
        self.welcome = first
        return self

    async def presence(self, state: str, meeting: dict[str, Any] | None = None) -> Message:
        fields: dict[str, Any] = {"type": "presence", "state": state}
        if meeting is not None:
            fields["meeting"] = meeting
        return await self.request(**fields)

    async def admit(self, guest: str) -> Message:
        return await self.request(type="admit", guest=guest)

    async def merge(self, guest: str) -> Message:
        return await self.request(type="merge", guest=guest)

    async def new_meeting(self, guest: str, title: str | None = None) -> Message:
        extra: dict[str, Any] = {"title": title} if title else {}
        return await self.request(type="new_meeting", guest=guest, **extra)

    async def busy(self, guest: str, message: str | None = None) -> Message:
        extra: dict[str, Any] = {"message": message} if message else {}
        return await self.request(type="busy", guest=guest, **extra)

    async def deny(self, guest: str, message: str | None = None, block: bool = False) -> Message:
        extra: dict[str, Any] = {"message": message} if message else {}
        if block:
            extra["block"] = True
        return await self.request(type="deny", guest=guest, **extra)

    async def message(self, guest: str, text: str) -> Message:
        return await self.request(type="message", guest=guest, text=text)

    async def admit_all(self) -> Message:
        return await self.request(type="admit_all")

    async def settings(self, **patch: Any) -> Message:
        return await self.request(type="settings", settings=patch)

    async def ping(self) -> Message:
        return await self.request(type="ping")


class GuestClient(_Client):
    """A guest: knocks (or resumes) on entering, then waits for the outcome."""

    table = TO_GUEST

    def __init__(
        self,
        base_url: str,
        slug: str,
        name: str = "Guest",
        *,
        email: str | None = None,
        token: str | None = None,
        options: dict[str, Any] | None = None,
        session: str | None = None,
        query: dict[str, str] | None = None,
        resume: str | None = None,
        **kw: Any,
    ) -> None:
        url = base_url.rstrip("/") + "/ws/guest/" + quote(slug, safe="")
        if query:
            url += "?" + urlencode(query)
        super().__init__(url, **kw)
        self.first: dict[str, Any] = (
            {"type": "resume", "resume": resume}
            if resume
            else {
                "type": "knock",
                "name": name,
                **{
                    k: v
                    for k, v in (
                        ("email", email),
                        ("token", token),
                        ("options", options),
                        ("session", session),
                    )
                    if v is not None
                },
            }
        )
        self.waiting: Waiting

    async def __aenter__(self) -> GuestClient:
        await self._open()
        await self.send(**self.first)
        first = await self.recv()
        if isinstance(first, Waiting):
            self.waiting = first
        else:
            self._inbox.put_nowait(first)  # an outcome (bypass, blocked): let wait_for see it
            if first.type == "error":
                await self.wait_closed()
                raise ClientError(
                    getattr(first, "code", "error"), getattr(first, "message", ""), self.close_code
                )
        return self

    async def cancel(self) -> None:
        await self.send(type="cancel")

    async def ping(self) -> Message:
        return await self.request(type="ping")
