"""The two WebSocket endpoints: first frame, read loop, clean-up.

One task per socket, started by the handshake (``upgrade.Gate``) on an open
``Connection``: frames are decoded and validated by ``protocol``, what they
mean is the WaitingRoom's, and clean-up always runs in ``finally``. Exceptions become wire errors in
``error_for``, the one place that does it; no exception text ever reaches a
peer (PROTOCOL.md, Errors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from protocol.errors import (
    CLOSE_FOR_CODE,
    BadMessage,
    CloseCode,
    ErrorCode,
    ProtocolError,
    RetiredLink,
    Unauthorized,
    UnknownLink,
)
from protocol.messages import (
    GUEST_FRAMES,
    HOST_FRAMES,
    Ack,
    Error,
    Hello,
    Knock,
    Message,
    Ping,
    Pong,
    Refresh,
    Resume,
    parse,
)
from server import ids, logs
from server.hosts.directory import Directory
from server.lobby.connection import Connection, SocketLimits
from server.lobby.hub import GuestSession, HostSession
from server.lobby.waiting_room import WaitingRoom
from server.metrics import Metrics
from server.tasks import running_loop

log = logging.getLogger("foyer.endpoints")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    origins: list[str]
    trusted_proxies: list[str]
    hello_timeout: float
    limits: SocketLimits


class Sockets:
    """This process's open sockets, so that a drain (SIGTERM) can refuse new
    ones, close the open ones with 1012 and wait for their clean-up (a guest
    marked away, a device's lease dropped) before the process exits."""

    def __init__(self) -> None:
        self.draining = False
        self._open: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._open)

    def run(self, conn: Connection, endpoint: Coroutine[Any, Any, None]) -> None:
        """Serve ``conn`` with its endpoint's task; this registry owns the task
        (``cancel`` ends the ones still running when the process stops)."""
        self._open.add(conn)
        task = running_loop().create_task(endpoint)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.draining:  # accepted while the drain began
            conn.close(CloseCode.SERVICE_RESTART)

    async def cancel(self) -> None:
        """End every endpoint task still running (the process stops)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def discard(self, conn: Connection) -> None:
        self._open.discard(conn)
        if self.draining and not self._open:
            self._empty.set()

    def drain(self) -> None:
        """Refuse new sockets from now on, and close every open one with 1012
        (after what is queued for it): its client resumes elsewhere."""
        self.draining = True
        for conn in list(self._open):
            conn.close(CloseCode.SERVICE_RESTART)
        if not self._open:
            self._empty.set()

    async def closed(self) -> None:
        """Until every socket's clean-up ran, once draining."""
        await self._empty.wait()


@dataclass(frozen=True, slots=True)
class Lobby:
    """What the endpoints need: the room, the slug directory, their config,
    metrics, and the registry of open sockets."""

    room: WaitingRoom
    directory: Directory
    config: EndpointConfig
    metrics: Metrics
    sockets: Sockets = field(default_factory=Sockets)


def error_for(exc: BaseException, ref: Any = None) -> Error:
    """The one place an exception becomes a wire ``error``."""
    if isinstance(exc, ProtocolError):
        return Error(code=exc.code.value, message=exc.message, ref=ref)
    if isinstance(exc, RedisError | OSError):
        log.warning(
            "store unavailable: %s", type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG)
        )
        return Error(
            code=ErrorCode.INTERNAL.value, message="temporarily unavailable, try again", ref=ref
        )
    log.error("unexpected error", exc_info=exc)
    return Error(code=ErrorCode.INTERNAL.value, message="internal error", ref=ref)


def _close_code(exc: ProtocolError, default: int) -> int:
    return int(CLOSE_FOR_CODE.get(exc.code, default))


def _pong(message: Ping) -> Pong:
    return Pong(ref=message.ref)


async def _first(
    conn: Connection,
    config: EndpointConfig,
    table: dict[str, type[Message]],
    allowed: tuple[type[Message], ...],
    close_code: int,
) -> Message | None:
    """The first frame within the hello timeout, decoded and of an allowed type;
    ``None`` when the socket was closed instead (4008, a bad frame, peer gone)."""
    try:
        frame = await conn.receive_within(config.hello_timeout)
    except TimeoutError:
        conn.send(error_for(BadMessage("no hello/knock in time")))
        conn.close(CloseCode.HANDSHAKE_TIMEOUT)
        return None
    if frame is None:
        return None
    try:
        message = parse(conn.codec.decode(frame), table)
        if not isinstance(message, allowed):
            names = "/".join(cls.TYPE for cls in allowed)
            raise BadMessage(f"the first frame must be {names}")
        return message
    except ProtocolError as exc:
        conn.send(error_for(exc))
        conn.close(CloseCode.TOO_LARGE if exc.code is ErrorCode.TOO_LARGE else close_code)
        return None


# ------------------------------------------------------------------ host devices


async def host_endpoint(conn: Connection, lobby: Lobby) -> None:
    lobby.metrics.host_devices.inc()
    session: HostSession | None = None
    expiry = TokenExpiry(conn)
    try:
        hello = await _first(conn, lobby.config, HOST_FRAMES, (Hello,), CloseCode.UNAUTHORIZED)
        if not isinstance(hello, Hello):
            return
        try:
            claims = lobby.room.authenticate(hello.token)
        except Unauthorized as exc:
            conn.send(error_for(exc, hello.ref))
            conn.close(CloseCode.UNAUTHORIZED)
            return
        session = HostSession(claims.host, ids.token_hex(8), conn)
        logs.bind(conn=session.device, host=claims.host)
        log.debug("device connected")
        try:
            await lobby.room.open_device(session)
        except (Unauthorized, UnknownLink) as exc:
            err = exc if isinstance(exc, Unauthorized) else Unauthorized("unknown host")
            conn.send(error_for(err, hello.ref))
            conn.close(CloseCode.UNAUTHORIZED)
            return
        expiry.at(claims.expires_at)
        device = session

        async def handle(message: Message) -> Message | None:
            if isinstance(message, Refresh):  # the token is the transport's business
                fresh = lobby.room.authenticate(message.token)
                if fresh.host != device.host:
                    raise Unauthorized("not this host's token")
                expiry.at(fresh.expires_at)
                return None
            return await lobby.room.handle_host(device.host, message, f"device:{device.device}")

        await _read_loop(conn, HOST_FRAMES, handle, ack=True)
    except Exception as exc:  # the store is unreachable, or a bug: no detail leaves
        conn.send(error_for(exc))
        conn.close(CloseCode.INTERNAL)
    finally:
        expiry.cancel()
        if session is not None:
            try:
                await lobby.room.close_device(session)
            except Exception:
                log.warning("could not drop a device lease")
        lobby.metrics.host_devices.dec()
        await _release(lobby, conn)


async def _release(lobby: Lobby, conn: Connection) -> None:
    """The socket's last step: close it (a no-op when it is closing or gone),
    and forget it."""
    conn.close()
    lobby.sockets.discard(conn)


class TokenExpiry:
    """Closes a device with 4001 when its token expires mid-connection; a
    ``refresh`` frame moves the deadline."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._timer: asyncio.TimerHandle | None = None

    def at(self, expires_at: float) -> None:
        self.cancel()
        delay = max(0.0, expires_at - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._conn.send(error_for(Unauthorized("token expired")))
        self._conn.close(CloseCode.UNAUTHORIZED)


async def _read_loop(
    conn: Connection,
    table: dict[str, type[Message]],
    handle: Callable[[Message], Awaitable[Message | None]],
    *,
    ack: bool,
    done: Callable[[], bool] = lambda: False,
) -> None:
    """Frames after the first: ``ping`` is answered here, the rest handed over;
    an error answers the frame (echoing its ``ref``) and never ends the loop."""
    while True:
        frame = await conn.receive()
        if frame is None:
            return
        if done():
            continue
        ref: Any = None
        try:
            raw = conn.codec.decode(frame)
            ref = raw.get("ref") if isinstance(raw.get("ref"), str | int) else None
            message = parse(raw, table)
            if isinstance(message, Ping):
                conn.send(_pong(message))
                continue
            answer = await handle(message)
            if answer is not None:
                conn.send(answer)
            elif ack and message.reference is not None:
                conn.send(Ack(ref=message.reference))
        except Exception as exc:
            conn.send(error_for(exc, ref))


# ------------------------------------------------------------------------ guests


async def guest_endpoint(
    conn: Connection, lobby: Lobby, slug: str, address: str, query: dict[str, str]
) -> None:
    """``address`` is the client's (``origins.address_of``); ``query`` the
    socket URL's parameters (link options such as a display name)."""
    lobby.metrics.guests_connected.inc()
    session: GuestSession | None = None
    try:
        try:
            host = await lobby.directory.host_for_slug(slug)
            if slug.lower() in (await lobby.directory.record(host))["retired"]:
                raise RetiredLink()
        except UnknownLink as exc:
            conn.send(error_for(exc))
            conn.close(CloseCode.UNKNOWN_LINK)
            return
        first = await _first(conn, lobby.config, GUEST_FRAMES, (Knock, Resume), CloseCode.POLICY)
        if not isinstance(first, Knock | Resume):
            return
        session = GuestSession(host, conn, ids.token_hex(8))
        logs.bind(conn=session.conn_id, host=host)
        try:
            await lobby.room.enter(session, first, address, query)
        except ProtocolError as exc:
            conn.send(error_for(exc))
            conn.close(_close_code(exc, CloseCode.POLICY))
            return
        guest = session
        if guest.guest:
            logs.bind(guest=guest.guest)
        log.debug("guest entered")

        async def handle_guest(message: Message) -> Message | None:
            await lobby.room.handle_guest(guest, message)
            return None

        if not guest.finished:
            await _read_loop(
                conn, GUEST_FRAMES, handle_guest, ack=False, done=lambda: guest.finished
            )
    except Exception as exc:  # the store is unreachable, or a bug: no detail leaves
        conn.send(error_for(exc))
        conn.close(CloseCode.INTERNAL)
    finally:
        if session is not None:
            try:
                await lobby.room.leave(session)
            except Exception:
                log.warning("could not mark a guest away; its lease will lapse")
        lobby.metrics.guests_connected.dec()
        await _release(lobby, conn)
