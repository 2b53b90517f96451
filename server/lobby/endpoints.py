"""The two WebSocket endpoints: accept, authenticate, read loop, clean-up.

Thin drivers: frames are decoded and validated by ``protocol``, the work is
done by ``WaitingRoom`` and the store, fan-out by the ``Hub``. Exceptions map
to wire codes in ``_error``; no exception text ever reaches a peer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import MutableMapping
from typing import Any

from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from protocol.codec import CODECS, Codec, negotiate
from protocol.errors import (
    CLOSE_FOR_CODE,
    BadMessage,
    CloseCode,
    ErrorCode,
    FoyerError,
    ProtocolError,
    RateLimited,
    Unauthorized,
    UnknownLink,
)
from protocol.messages import (
    GUEST_FRAMES,
    HOST_FRAMES,
    AdmitAll,
    Busy,
    Cancel,
    Deny,
    Hello,
    Knock,
    Message,
    NewMeeting,
    Ping,
    Presence,
    Resume,
    SendMessage,
    UpdateSettings,
    parse,
)
from server.access.origins import client_address, origin_allowed
from server.lobby.connection import Connection
from server.lobby.hub import GuestSession, HostSession
from server.node import Node
from server.storage.store import Step

log = logging.getLogger("foyer.endpoints")


def _error(exc: Exception, ref: Any = None) -> dict[str, Any]:
    """The one place an exception becomes a wire ``error``."""
    if isinstance(exc, ProtocolError):
        body: dict[str, Any] = {"type": "error", "code": exc.code.value, "message": exc.message}
    elif isinstance(exc, RedisError):
        log.warning("store unavailable: %s", type(exc).__name__)
        body = {
            "type": "error",
            "code": ErrorCode.INTERNAL.value,
            "message": "temporarily unavailable, try again",
        }
    else:
        log.error("unexpected error", exc_info=exc)
        body = {"type": "error", "code": ErrorCode.INTERNAL.value, "message": "internal error"}
    if ref is not None:
        body["ref"] = ref
    return body


def _close_code(exc: ProtocolError, default: int) -> int:
    return int(CLOSE_FOR_CODE.get(exc.code, default))


async def _accept(ws: WebSocket, node: Node) -> Codec | None:
    """Check origin and subprotocol in the handshake; ``None`` when refused."""
    if not origin_allowed(ws.headers, node.settings.origin_list):
        await ws.close(code=CloseCode.POLICY)  # before accept: HTTP 403
        return None
    offered = list(ws.scope.get("subprotocols") or [])
    chosen = negotiate(offered)
    if chosen is None:
        await ws.close(code=CloseCode.POLICY)
        return None
    await ws.accept(subprotocol=chosen if offered else None)
    return CODECS[chosen]


def _frame(event: MutableMapping[str, Any]) -> bytes | str | None:
    data = event.get("bytes")
    return data if data is not None else event.get("text")


async def _first_frame(ws: WebSocket, conn: Connection, wait_s: float) -> Any:
    """The first frame within ``wait_s``, or ``None`` (closed 4008 / peer gone)."""
    try:
        async with asyncio.timeout(wait_s):
            event = await ws.receive()
    except TimeoutError:
        conn.send({"type": "error", "code": "bad_message", "message": "no hello/knock in time"})
        conn.close(CloseCode.HANDSHAKE_TIMEOUT)
        return None
    if event["type"] == "websocket.disconnect":
        return None
    return _frame(event)


def _decode_first(
    conn: Connection,
    frame: Any,
    table: dict[str, type[Message]],
    allowed: tuple[type[Message], ...],
    close_code: int,
) -> Message | None:
    try:
        message = parse(conn.codec.decode(frame), table)
        if not isinstance(message, allowed):
            names = "/".join(cls.TYPE for cls in allowed)
            raise BadMessage(f"the first frame must be {names}")
        return message
    except ProtocolError as exc:
        conn.send(_error(exc))
        conn.close(CloseCode.TOO_LARGE if exc.code is ErrorCode.TOO_LARGE else close_code)
        return None


# ------------------------------------------------------------------ host devices


async def _open(ws: WebSocket) -> tuple[Node, Connection] | None:
    """Accept the socket (or refuse it in the handshake) and start its writer."""
    node: Node = ws.app.state.node
    codec = await _accept(ws, node)
    if codec is None:
        return None
    return node, Connection(
        ws,
        codec,
        node.settings.send_queue,
        node.settings.send_queue_bytes,
        node.settings.drain_timeout,
    )


async def host_endpoint(ws: WebSocket) -> None:
    opened = await _open(ws)
    if opened is None:
        return
    node, conn = opened
    conn.pause()  # the welcome goes out before any event (see resume_with)
    conn.start()
    session: HostSession | None = None
    timer: asyncio.TimerHandle | None = None
    try:
        frame = await _first_frame(ws, conn, node.settings.hello_timeout)
        if frame is None:
            return
        hello = _decode_first(conn, frame, HOST_FRAMES, (Hello,), CloseCode.UNAUTHORIZED)
        if not isinstance(hello, Hello):
            return
        try:
            claims = node.tokens.host(hello.token)
            record = await node.waiting_room.host_record(claims.host)
        except (Unauthorized, UnknownLink) as exc:
            err = exc if isinstance(exc, Unauthorized) else Unauthorized("unknown host")
            conn.send(_error(err, hello.ref))
            conn.close(CloseCode.UNAUTHORIZED)
            return
        host = claims.host
        session = HostSession(host, secrets.token_hex(8), conn)
        await node.hub.add_host(session)
        await node.store.device_up(host, session.device)
        waiting = await node.store.waiting(host)
        state, meeting = await node.store.presence(host)
        node.hub.welcomed(session, waiting)
        conn.resume_with(
            {
                "type": "welcome",
                "host": host,
                "name": record["name"],
                "state": state,
                "waiting": waiting,
                "policy": {k: record["settings"]["policy"].get(k) for k in ("locked", "bypass")},
                "meeting": meeting,
                "settings": record["settings"],
            }
        )
        if claims.expires_at is not None:
            timer = _expire_at(conn, claims.expires_at)
        await _host_loop(ws, conn, node, session)
    except Exception as exc:  # the store is unreachable, or a bug: no detail leaves
        conn.send(_error(exc))
        conn.close(CloseCode.INTERNAL)
    finally:
        if timer is not None:
            timer.cancel()
        if session is not None:
            node.hub.remove_host(session)
            try:
                await node.store.device_down(session.host, session.device)
            except Exception:
                log.warning("could not drop a device lease")
        await conn.stop()


def _expire_at(conn: Connection, expires_at: float) -> asyncio.TimerHandle:
    """Close the device with 4001 when its token expires mid-connection."""
    loop = asyncio.get_running_loop()

    def expire() -> None:
        conn.send({"type": "error", "code": "unauthorized", "message": "token expired"})
        conn.close(CloseCode.UNAUTHORIZED)

    return loop.call_later(max(0.0, expires_at - time.time()), expire)


async def _host_loop(ws: WebSocket, conn: Connection, node: Node, session: HostSession) -> None:
    while True:
        event = await ws.receive()
        if event["type"] == "websocket.disconnect":
            return
        ref: Any = None
        try:
            raw = conn.codec.decode(_frame(event) or b"")
            ref = raw.get("ref") if isinstance(raw.get("ref"), str | int) else None
            message = parse(raw, HOST_FRAMES)
            reply = await _host_frame(node, session, message)
            if reply is not None:
                conn.send(reply)
            elif message.reference is not None:
                conn.send({"type": "ack", "ref": message.reference})
        except FoyerError as exc:
            conn.send(_error(exc, ref))
        except Exception as exc:
            conn.send(_error(exc, ref))


async def _host_frame(node: Node, session: HostSession, message: Message) -> dict[str, Any] | None:
    """Apply one host frame; returns a reply frame, or ``None`` for a plain ack."""
    room, host = node.waiting_room, session.host
    match message:
        case Ping():
            return {"type": "pong", **({"ref": message.ref} if message.ref is not None else {})}
        case Hello():
            raise BadMessage("hello was already said")
        case Presence(state=state, meeting=meeting):
            await node.store.set_presence(host, state, meeting)
        case NewMeeting(guest=guest, title=title):
            await room.reply(host, "new_meeting", guest, title=title)
        case Busy(guest=guest, message=text):
            await room.reply(host, "busy", guest, message=text)
        case Deny(guest=guest, message=text, block=block):
            if block:
                await node.settings_service.block_guest(host, guest)
            await room.reply(host, "deny", guest, message=text)
        case SendMessage(guest=guest, text=text):
            await node.store.say(host, guest, text)
        case AdmitAll():
            await room.admit_all(host)
        case UpdateSettings(settings=patch):
            await node.settings_service.update(host, patch)
        case _ if message.TYPE in ("admit", "merge"):
            await room.reply(host, message.TYPE, getattr(message, "guest"))  # noqa: B009
        case _:
            raise BadMessage(f"'{message.TYPE}' is not a host frame")
    return None


# ------------------------------------------------------------------------ guests


async def guest_endpoint(ws: WebSocket) -> None:
    opened = await _open(ws)
    if opened is None:
        return
    node, conn = opened
    conn.start()
    session: GuestSession | None = None
    watching: str | None = None
    try:
        try:
            host = await node.waiting_room.host_for_slug(ws.path_params["slug"])
        except UnknownLink as exc:
            conn.send(_error(exc))
            conn.close(CloseCode.UNKNOWN_LINK)
            return
        frame = await _first_frame(ws, conn, node.settings.hello_timeout)
        if frame is None:
            return
        first = _decode_first(conn, frame, GUEST_FRAMES, (Knock, Resume), CloseCode.POLICY)
        if first is None:
            return
        session = GuestSession(host, conn, secrets.token_hex(8))
        await node.hub.watch_host(host)
        watching = host
        try:
            if isinstance(first, Knock):
                await _knock(ws, node, session, first)
            else:
                assert isinstance(first, Resume)
                await _resume(node, session, first)
        except ProtocolError as exc:
            conn.send(_error(exc))
            conn.close(_close_code(exc, CloseCode.POLICY))
            return
        if not session.finished:
            await _guest_loop(ws, conn, node, session)
    except Exception as exc:  # the store is unreachable, or a bug: no detail leaves
        conn.send(_error(exc))
        conn.close(CloseCode.INTERNAL)
    finally:
        if session is not None and session.guest:
            node.hub.remove_guest(session)
            node.store.drop_lease(session.host, session.guest, session.conn_id)
            if not session.finished:
                try:
                    await node.waiting_room.disconnect(session.host, session.guest, session.conn_id)
                except Exception:
                    log.warning("could not mark a guest away")
        if watching is not None:
            node.hub.unwatch_host(watching)
        await conn.stop()


async def _knock(ws: WebSocket, node: Node, session: GuestSession, knock: Knock) -> None:
    limit = node.settings.knock_limit
    if limit and await node.store.over_limit(
        "ip:" + client_address(ws.scope, node.settings.proxy_list), limit
    ):
        raise RateLimited()
    session.guest = "g" + secrets.token_urlsafe(12)
    query = {k: v for k, v in ws.query_params.items()}
    info, ignored = await node.waiting_room.guest_info(session.host, knock, query, session.guest)
    node.hub.add_guest(session)  # before the knock: no event about it can be missed
    # The lease goes out in the same pipeline as the knock, so a process that dies
    # right after the knock still leaves a lease that will lapse.
    node.store.lease_guests([(session.host, session.guest, session.conn_id)])
    try:
        outcome = await node.waiting_room.knock(session.host, info, ignored, session.conn_id)
    except BaseException:
        node.hub.remove_guest(session)
        node.store.drop_lease(session.host, session.guest, session.conn_id)
        session.guest = ""
        raise
    if outcome.queued:
        session.conn.send(outcome.message)  # ``waiting`` first, then anything held
        session.set_place(outcome.score, outcome.position, outcome.score)
        node.mailer.knocked(session.host, bool(outcome.message["host_online"]))
    else:
        _finish(node, session, outcome.message)


async def _resume(node: Node, session: GuestSession, resume: Resume) -> None:
    session.guest = resume.resume.split("~", 1)[0]
    older = node.hub.guests.get(session.host, {}).get(session.guest)
    node.hub.add_guest(session)
    node.store.lease_guests([(session.host, session.guest, session.conn_id)])
    try:
        result = await node.waiting_room.resume(session.host, resume.resume, session.conn_id)
    except BaseException:
        node.hub.remove_guest(session)
        node.store.drop_lease(session.host, session.guest, session.conn_id)
        if older is not None:
            node.hub.add_guest(older)
        session.guest = ""
        raise
    if older is not None:  # a half-open socket of this guest on this process
        node.hub.replaced(older)
    if isinstance(result, Step):
        online = await node.store.host_online(session.host)
        session.conn.send(
            {
                "type": "waiting",
                "guest": session.guest,
                "resume": resume.resume,
                "position": result.position,
                "host_online": online,
            }
        )
        session.set_place(result.score, result.position, result.counter)
    else:
        _finish(node, session, result)


def _finish(node: Node, session: GuestSession, outcome: dict[str, Any]) -> None:
    session.finished = True
    node.hub.remove_guest(session)
    session.conn.send(outcome)
    session.conn.close(CloseCode.NORMAL)


async def _guest_loop(ws: WebSocket, conn: Connection, node: Node, session: GuestSession) -> None:
    while True:
        event = await ws.receive()
        if event["type"] == "websocket.disconnect":
            return
        if session.finished:
            continue
        try:
            message = parse(conn.codec.decode(_frame(event) or b""), GUEST_FRAMES)
            match message:
                case Ping():
                    conn.send(
                        {
                            "type": "pong",
                            **({"ref": message.ref} if message.ref is not None else {}),
                        }
                    )
                case Cancel():
                    await node.waiting_room.cancel(session.host, session.guest)
                case _:
                    raise BadMessage(f"'{message.TYPE}' is only valid as the first frame")
        except FoyerError as exc:
            conn.send(_error(exc))
        except Exception as exc:
            conn.send(_error(exc))
