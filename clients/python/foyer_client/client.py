"""A thin driver around ``protocol``: messages out, typed messages in.

Every frame the client sends is a ``protocol.messages`` dataclass, so a bad
frame fails in its constructor (``BadMessage``) before it reaches the socket;
``send_map`` and ``send_raw`` exist only for tests of bad input.

Errors are the ones in ``protocol.errors``: an ``error`` reply raises the
``ProtocolError`` for its code (``AlreadyResolved``, ``UnknownGuest``, ...),
with ``close_code`` set when the server closed the connection after it; a
connection the server closed raises ``ConnectionClosed``; a frame from the
server that breaks the protocol raises ``BadMessage`` (or ``BadFrame``) and
ends the connection.

The inbox of received messages is bounded (``queue_size``). When it is full
the reader stops reading the socket until ``recv`` makes room, as
``websockets`` does with its own buffer: nothing is dropped, and a server
that goes on sending to a client that does not read treats it as a slow
consumer and closes it (4013). Replies to ``request`` travel behind unread
messages, so read what you asked for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from protocol.codec import CODECS, JSON, MSGPACK, Codec
from protocol.errors import BadMessage, ConnectionClosed, FoyerError, ProtocolError, error_for_code
from protocol.messages import (
    TO_GUEST,
    TO_HOST,
    Ack,
    Admit,
    AdmitAll,
    Busy,
    Cancel,
    Deny,
    DenyAll,
    Error,
    Hello,
    Hold,
    Knock,
    LobbyPage,
    Merge,
    Message,
    NewMeeting,
    Page,
    Ping,
    Pong,
    Presence,
    Refresh,
    Resume,
    SendMessage,
    UpdateSettings,
    Waiting,
    Welcome,
    parse,
)

DEFAULT_TIMEOUT = 10.0

M = TypeVar("M", bound=Message)
M1 = TypeVar("M1", bound=Message)
M2 = TypeVar("M2", bound=Message)
M3 = TypeVar("M3", bound=Message)


class _Client:
    """Shared machinery: one socket, one reader task, a bounded inbox."""

    table: dict[str, type[Message]] = {}

    def __init__(
        self,
        url: str,
        *,
        codec: str = "msgpack",
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.url = url
        self.codec: Codec = CODECS[MSGPACK if codec == "msgpack" else JSON]
        self.headers = {**(headers or {}), **({"Origin": origin} if origin else {})}
        self.ws: ClientConnection | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        # Bounded: the reader waits for room (backpressure, see the module docstring).
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue(queue_size)
        self._queued = 0  # messages in the inbox (the end-of-stream ``None`` is not one)
        self._unread: collections.deque[Message] = collections.deque()  # put back by __aenter__
        self._ended = False  # the reader is done: no more messages will come
        self._failure: ProtocolError | None = None  # the server broke the protocol
        self._reader: asyncio.Task[None] | None = None
        self._refs = itertools.count(1)
        self._acks: dict[str | int, asyncio.Future[Message]] = {}
        self._sends: set[asyncio.Future[None]] = set()

    async def _open(self) -> None:
        self.ws = await connect(
            self.url,
            subprotocols=[self.codec.name],  # type: ignore[list-item]
            additional_headers=self.headers or None,
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
                await self._inbox.put(message)  # waits while the inbox is full
                self._queued += 1
        except WebSocketClosed:
            pass
        except ProtocolError as exc:  # the server sent something we cannot read
            self._failure = exc
            await self.ws.close(1002, "protocol error")
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self._ended = True
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(self._end())
            self._acks.clear()
            if self._inbox.empty():
                self._inbox.put_nowait(None)  # wake a waiting ``recv``

    def _end(self) -> FoyerError:
        """What a read after the end raises."""
        if self._failure is not None:
            return self._failure
        return ConnectionClosed(self.close_code, self.close_reason)

    async def close(self) -> None:
        for task in list(self._sends):
            task.cancel()
        if self._reader is not None and self._inbox.full():
            self._reader.cancel()  # it waits for room that nobody will make
        if self.ws is not None:
            await self.ws.close()
        reader = self._reader
        if reader is not None:
            await asyncio.wait([reader])  # a cancellation of *our* caller still propagates
            if not reader.cancelled():
                reader.result()  # a bug in the reader surfaces here

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

    async def send(self, message: Message) -> None:
        """Send one message (a ``protocol.messages`` instance, valid by construction)."""
        await self.send_raw(self.codec.encode(message.to_map()))

    async def send_map(self, body: Mapping[str, Any]) -> None:
        """For tests of bad input only: send any map, valid or not."""
        await self.send_raw(self.codec.encode(body))

    async def send_raw(self, frame: bytes | str) -> None:
        """Send a frame as it is (``send`` ends here; tests send garbage with it)."""
        assert self.ws is not None
        try:
            await self.ws.send(frame)
        except WebSocketClosed:
            raise ConnectionClosed(self.ws.close_code, self.ws.close_reason or "") from None

    def send_nowait(self, message: Message) -> None:
        """Fire and forget (load loops): schedules the send on the socket."""
        task = asyncio.ensure_future(self.send(message))
        self._sends.add(task)  # owned here, cancelled by ``close``
        task.add_done_callback(self._sends.discard)

    async def request(self, message: Message, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Send ``message`` with a fresh ``ref`` and wait for the frame that
        answers it (``ack``, or ``pong`` to a ``ping``). An ``error`` answer
        raises its ``ProtocolError`` (``error_for_code``)."""
        ref = next(self._refs)
        message = type(message).from_map({**message.to_map(), "ref": ref})
        if message.reference != ref:
            raise TypeError(f"'{message.TYPE}' carries no ref")
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._acks[ref] = fut
        try:
            await self.send(message)
            async with asyncio.timeout(timeout):
                reply = await fut
        finally:
            self._acks.pop(ref, None)
        if isinstance(reply, Error):
            raise error_for_code(reply.code, reply.message)
        return reply

    # -- receiving --------------------------------------------------------------------

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message. Once every message is read and the connection is
        over: ``ConnectionClosed`` (or the ``ProtocolError`` the server's frame
        broke the protocol with)."""
        if self._unread:
            return self._unread.popleft()
        if self._ended and self._inbox.empty():
            raise self._end()
        async with asyncio.timeout(timeout):
            message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)  # for the next reader
            raise self._end()
        self._queued -= 1
        return message

    @property
    def backlog(self) -> int:
        """Messages received and not read yet (at most ``queue_size`` in the inbox)."""
        return self._queued + len(self._unread)

    @overload
    async def wait_for(self, kind: type[M], /, *, timeout: float = ...) -> M: ...

    @overload
    async def wait_for(
        self, kind: type[M1], kind2: type[M2], /, *, timeout: float = ...
    ) -> M1 | M2: ...

    @overload
    async def wait_for(
        self, kind: type[M1], kind2: type[M2], kind3: type[M3], /, *, timeout: float = ...
    ) -> M1 | M2 | M3: ...

    @overload
    async def wait_for(
        self, *kinds: type[Message] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> Message: ...

    async def wait_for(
        self, *kinds: type[Message] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """Skip messages until one of the classes ``kinds`` arrives, and return
        it typed: ``await guest.wait_for(Admitted) -> Admitted``. (A type name
        such as ``"admitted"`` is still accepted, and typed as ``Message``.)"""
        wanted = tuple(self._class_of(kind) for kind in kinds)
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout=timeout)
                if isinstance(message, wanted):
                    return message

    def _class_of(self, kind: type[Message] | str) -> type[Message]:
        if isinstance(kind, str):
            cls = self.table.get(kind)
            if cls is None:
                raise ValueError(f"no '{kind}' message comes to a {type(self).__name__}")
            return cls
        if kind not in self.table.values():
            raise ValueError(f"no {kind.__name__} message comes to a {type(self).__name__}")
        return kind

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait for the server to close; returns the close code."""
        if self._reader is not None:
            async with asyncio.timeout(timeout):
                await asyncio.wait([self._reader])  # waits; never cancels the reader
        return self.close_code

    def pending(self) -> list[Message]:
        """Messages received and not read yet (without waiting)."""
        out = list(self._unread)
        self._unread.clear()
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is None:
                self._inbox.put_nowait(None)
                break
            self._queued -= 1
            out.append(item)
        return out

    async def _send_first(self, message: Message) -> None:
        """Send ``hello``/``knock``/``resume``. The server may refuse before it
        reads it (an unknown link): then its ``error`` is read next."""
        with contextlib.suppress(ConnectionClosed):
            await self.send(message)

    async def _refused(self, error: Error) -> ProtocolError:
        """The error that refused a ``hello``/``knock``/``resume``, with the
        close code that follows it; the connection is closed."""
        with contextlib.suppress(TimeoutError):
            await self.wait_closed()
        await self.close()
        return error_for_code(error.code, error.message, close_code=self.close_code)


def _expect(reply: Message, cls: type[M]) -> M:
    if not isinstance(reply, cls):
        raise BadMessage(f"expected '{cls.TYPE}', got '{reply.type}'")
    return reply


class HostClient(_Client):
    """A host device: says hello, gets ``welcome``, answers knocks."""

    table = TO_HOST

    def __init__(self, base_url: str, token: str, **kw: Any) -> None:
        super().__init__(base_url.rstrip("/") + "/ws/host", **kw)
        self.token = token
        self.welcome: Welcome

    async def __aenter__(self) -> HostClient:
        await self._open()
        try:
            await self._send_first(Hello(token=self.token))
            first = await self.recv()
            if isinstance(first, Error):
                raise await self._refused(first)
            self.welcome = _expect(first, Welcome)
        except BaseException:
            await self.close()
            raise
        return self

    async def presence(self, state: str, meeting: dict[str, Any] | None = None) -> Ack:
        return _expect(await self.request(Presence(state=state, meeting=meeting)), Ack)

    async def admit(self, guest: str) -> Ack:
        return _expect(await self.request(Admit(guest=guest)), Ack)

    async def merge(self, guest: str) -> Ack:
        return _expect(await self.request(Merge(guest=guest)), Ack)

    async def new_meeting(self, guest: str, title: str | None = None) -> Ack:
        return _expect(await self.request(NewMeeting(guest=guest, title=title or None)), Ack)

    async def busy(self, guest: str, message: str | None = None) -> Ack:
        return _expect(await self.request(Busy(guest=guest, message=message or None)), Ack)

    async def deny(self, guest: str, message: str | None = None, block: bool = False) -> Ack:
        reply = await self.request(Deny(guest=guest, message=message or None, block=block or None))
        return _expect(reply, Ack)

    async def message(self, guest: str, text: str) -> Ack:
        return _expect(await self.request(SendMessage(guest=guest, text=text)), Ack)

    async def admit_all(self) -> Ack:
        return _expect(await self.request(AdmitAll()), Ack)

    async def hold(
        self, guest: str, message: str | None = None, estimate_s: int | None = None
    ) -> Ack:
        """Keep the guest in its place with a line and an estimate (addition)."""
        hold = Hold(guest=guest, message=message or None, estimate_s=estimate_s)
        return _expect(await self.request(hold), Ack)

    async def deny_all(self, message: str | None = None) -> Ack:
        """Deny every waiting guest with one line, atomically (addition)."""
        return _expect(await self.request(DenyAll(message=message or None)), Ack)

    async def settings(self, **patch: Any) -> Ack:
        return _expect(await self.request(UpdateSettings(settings=patch)), Ack)

    async def page(self, after: str | None = None, limit: int | None = None) -> LobbyPage:
        """Waiting guests after ``after`` (oldest first): the ``welcome`` lists only
        the oldest few of a big lobby (``welcome.waiting_total`` counts them all)."""
        return _expect(await self.request(Page(after=after, limit=limit)), LobbyPage)

    async def all_waiting(self) -> list[dict[str, Any]]:
        """Every guest waiting now, oldest first, paged (bounded by the lobby's size)."""
        guests: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await self.page(after)
            guests += page.guests
            if not page.more or not page.guests:
                return guests
            after = page.guests[-1]["id"]

    async def refresh(self, token: str) -> Ack:
        """Swap in a new token before the current one expires (no reconnect)."""
        ack = _expect(await self.request(Refresh(token=token)), Ack)
        self.token = token
        return ack

    async def ping(self) -> Pong:
        return _expect(await self.request(Ping()), Pong)


class GuestClient(_Client):
    """A guest: knocks (or resumes) on entering, then waits for the outcome.

    On entering, ``waiting`` holds the guest's place; an outcome that came
    instead (a bypass, a blocked email) is left for ``recv``/``wait_for``; an
    ``error`` raises its ``ProtocolError`` with ``close_code`` set."""

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
        self.first: Knock | Resume = (
            Resume(resume=resume)
            if resume
            else Knock(name=name, email=email, token=token, options=options, session=session)
        )
        self.waiting: Waiting

    async def __aenter__(self) -> GuestClient:
        await self._open()
        try:
            await self._send_first(self.first)
            first = await self.recv()
            if isinstance(first, Error):
                raise await self._refused(first)
        except BaseException:
            await self.close()
            raise
        if isinstance(first, Waiting):
            self.waiting = first
        else:
            self._unread.append(first)  # an outcome (bypass, blocked): let wait_for see it
        return self

    async def cancel(self) -> None:
        await self.send(Cancel())

    async def ping(self) -> Pong:
        return _expect(await self.request(Ping()), Pong)
