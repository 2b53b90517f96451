"""The typed Python client: against a real ``foyer serve`` for what the server
does, and against a small scripted WebSocket server for what a real one must
never do (a frame that breaks the protocol, a client that stops reading)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from foyer_client import (
    AlreadyResolved,
    BadMessage,
    ConnectionClosed,
    GuestClient,
    HostClient,
    Unauthorized,
    UnknownLink,
)
from protocol.errors import CloseCode
from protocol.messages import (
    Ack,
    Admitted,
    BusyNotice,
    Denied,
    JoinRequest,
    Pong,
    Position,
    Resolved,
    Welcome,
)
from tests.support import FoyerProcess

# -- against foyer serve ---------------------------------------------------------------


async def test_wait_for_returns_the_class_asked_for(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Ann") as guest,
    ):
        knock = await device.wait_for(JoinRequest)
        assert type(knock) is JoinRequest and knock.guest["id"] == guest.waiting.guest
        assert type(await device.admit(knock.guest["id"])) is Ack
        out = await guest.wait_for(Admitted, BusyNotice, Denied)
        assert type(out) is Admitted and out.mode == "admit"
        resolved = await device.wait_for("resolved")  # the old string form still works
        assert type(resolved) is Resolved and resolved.guest == guest.waiting.guest


async def test_wait_for_refuses_what_never_comes(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Bo") as guest:
        with pytest.raises(ValueError, match="Welcome"):
            await guest.wait_for(Welcome)  # a host's message: would only time out
        with pytest.raises(ValueError, match="admited"):
            await guest.wait_for("admited")


async def test_losing_reply_raises_already_resolved(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer.ws_url, host["token"], codec="json") as d2,
        GuestClient(foyer.ws_url, host["slug"], name="Cy") as guest,
    ):
        await d1.admit(guest.waiting.guest)
        with pytest.raises(AlreadyResolved) as err:
            await d2.busy(guest.waiting.guest)
        assert err.value.close_code is None  # a reply error keeps the device connected
        assert err.value.message == "this guest was already answered"
        assert type(await d2.ping()) is Pong


async def test_unknown_slug_raises_unknown_link_with_close_code(foyer: FoyerProcess) -> None:
    with pytest.raises(UnknownLink) as err:
        async with GuestClient(foyer.ws_url, "no-such-link-here", name="Lost"):
            pass
    assert err.value.close_code == CloseCode.UNKNOWN_LINK == 4004


async def test_bad_token_raises_unauthorized_with_close_code(foyer: FoyerProcess) -> None:
    with pytest.raises(Unauthorized) as err:
        async with HostClient(foyer.ws_url, "not-a-jwt"):
            pass
    assert err.value.close_code == CloseCode.UNAUTHORIZED


async def test_a_closed_connection_raises_connection_closed(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Di") as guest,
    ):
        await device.admit(guest.waiting.guest)
        await guest.wait_for(Admitted)
        with pytest.raises(ConnectionClosed) as err:
            await guest.recv()
        assert err.value.close_code == CloseCode.NORMAL
        with pytest.raises(ConnectionClosed):
            await guest.wait_for(Position)
        with pytest.raises(ConnectionClosed):
            await guest.ping()


async def test_replaced_guest_hears_4409(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Ed") as old:
        async with GuestClient(foyer.ws_url, host["slug"], resume=old.waiting.resume):
            with pytest.raises(ConnectionClosed) as err:
                await old.wait_for(Position)
            assert err.value.close_code == CloseCode.REPLACED


# -- against a scripted server ----------------------------------------------------------

Script = Callable[[ServerConnection], Awaitable[None]]
WAITING = {"type": "waiting", "guest": "g1", "resume": "g1~s", "position": 11, "host_online": True}


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """Start a WebSocket server that plays ``script`` to each connection; its URL."""
    servers = []
    done: list[asyncio.Future[None]] = []

    async def start(script: Script) -> str:
        async def handler(ws: ServerConnection) -> None:
            fut = asyncio.get_running_loop().create_future()
            done.append(fut)
            try:
                await script(ws)
                fut.set_result(None)
            except Exception as exc:
                fut.set_exception(exc)

        server = await serve(handler, "127.0.0.1", 0, subprotocols=["foyer.v1.json"])  # type: ignore[list-item]
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    for fut in done:
        await fut  # a failed assertion in a script fails the test


async def test_full_inbox_holds_back_and_loses_nothing(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "knock"
        await ws.send(json.dumps(WAITING))
        for position in range(10, 0, -1):
            await ws.send(json.dumps({"type": "position", "position": position}))
        await ws.send(json.dumps({"type": "denied"}))
        await ws.close()

    url = await scripted(script)
    async with GuestClient(url, "x", name="Slow", codec="json", queue_size=2) as guest:
        assert guest.ws is not None
        await guest.ws.wait_closed()  # every frame has reached the client, none is read
        assert guest.backlog == 2  # full: the reader waits for room, and is alive
        positions = [(await guest.wait_for(Position)).position for _ in range(10)]
        assert positions == list(range(10, 0, -1))
        assert type(await guest.recv()) is Denied
        with pytest.raises(ConnectionClosed) as err:
            await guest.recv()
        assert err.value.close_code == CloseCode.NORMAL


async def test_close_with_a_full_inbox_does_not_hang(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps(WAITING))
        for position in range(10, 0, -1):
            await ws.send(json.dumps({"type": "position", "position": position}))
        await ws.close()

    url = await scripted(script)
    guest = GuestClient(url, "x", name="Gone", codec="json", queue_size=2)
    await guest.__aenter__()
    assert guest.ws is not None
    await guest.ws.wait_closed()
    assert guest.backlog == 2
    async with asyncio.timeout(5):
        await guest.close()


async def test_a_frame_that_breaks_the_protocol_raises_bad_message(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps(WAITING))
        await ws.send(json.dumps({"type": "position", "position": 0}))
        await ws.wait_closed()

    url = await scripted(script)
    async with GuestClient(url, "x", name="Fay", codec="json") as guest:
        with pytest.raises(BadMessage, match="'position'"):
            await guest.recv()
        with pytest.raises(BadMessage):  # and stays so
            await guest.wait_for(Position)
        assert guest.close_code == 1002  # the client closed: protocol error


async def test_a_bad_first_frame_fails_entering(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({**WAITING, "host_online": "yes"}))
        await ws.wait_closed()

    url = await scripted(script)
    with pytest.raises(BadMessage, match="'host_online'"):
        async with GuestClient(url, "x", name="Gus", codec="json"):
            pass
