"""Every bad input gets the protocol's answer and nothing else (PROTOCOL.md, Errors)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from foyer_client import GuestClient, HostClient
from protocol.errors import ErrorCode
from protocol.messages import Error, JoinRequest, Knock
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def quick_hello(redis_url: str) -> Iterator[FoyerProcess]:
    """A process that waits 0.5 s, not the default 5 s, for the first frame."""
    with spawn_foyer(redis_url, {"FOYER_HELLO_TIMEOUT": "0.5"}) as proc:
        yield proc


async def _open(url: str, proto: str | None = "foyer.v1.json") -> ClientConnection:
    return await connect(
        url,
        subprotocols=[proto] if proto else None,  # type: ignore[list-item]
        max_size=None,
        compression=None,
    )


async def _recv_json(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 10)
    return json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame)


async def _closed(ws: ClientConnection, within: float = 10) -> int | None:
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def test_bad_frame_keeps_host_connected(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        await device.send_raw(b"\xc1\xc1 not msgpack")
        err = await device.wait_for(Error)
        assert err.code == ErrorCode.BAD_FRAME
        await device.send_map({"type": "admit", "ref": "r-1"})
        err = await device.wait_for(Error)
        assert err.code == ErrorCode.BAD_MESSAGE and err.reference == "r-1"
        await device.send_map({"type": "teleport", "ref": 9})
        err = await device.wait_for(Error)
        assert err.code == ErrorCode.BAD_MESSAGE and err.reference == 9
        assert "Traceback" not in err.message
        assert (await device.ping()).type == "pong"  # still connected


async def test_frame_over_64k_closes_1009(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        await device.send_map({"type": "message", "guest": "g", "text": "x" * (70 * 1024)})
        assert await device.wait_closed() == 1009


async def test_no_hello_in_time_closes_4008(quick_hello: FoyerProcess) -> None:
    ws = await _open(quick_hello.ws_url + "/ws/host")
    assert await _closed(ws, within=4) == 4008  # well before the default 5 s


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        jwt.encode({"sub": "someone"}, "wrong-secret-" + "x" * 40, algorithm="HS256"),
    ],
)
async def test_bad_token_closes_4001(foyer: FoyerProcess, token: str) -> None:
    ws = await _open(foyer.ws_url + "/ws/host")
    await ws.send(json.dumps({"type": "hello", "token": token}))
    err = await _recv_json(ws)
    assert err["type"] == "error" and err["code"] == "unauthorized"
    assert await _closed(ws) == 4001


async def test_expired_token_closes_4001(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    expired = jwt.encode(
        {"sub": host["id"], "exp": int(time.time()) - 10}, foyer.secret, algorithm="HS256"
    )
    ws = await _open(foyer.ws_url + "/ws/host")
    await ws.send(json.dumps({"type": "hello", "token": expired}))
    err = await _recv_json(ws)
    assert err["code"] == "unauthorized" and "expired" in err["message"]
    assert await _closed(ws) == 4001


async def test_token_expiring_mid_connection_closes_4001(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    short = jwt.encode(
        {"sub": host["id"], "exp": int(time.time()) + 2}, foyer.secret, algorithm="HS256"
    )
    async with HostClient(foyer.ws_url, short) as device:
        assert await device.wait_closed(timeout=10) == 4001


async def test_first_host_frame_must_be_hello(foyer: FoyerProcess) -> None:
    ws = await _open(foyer.ws_url + "/ws/host")
    await ws.send(json.dumps({"type": "admit", "guest": "g"}))
    err = await _recv_json(ws)
    assert err["code"] == "bad_message"
    assert await _closed(ws) == 4001


async def test_unknown_slug_closes_4004(foyer: FoyerProcess) -> None:
    ws = await _open(foyer.ws_url + "/ws/guest/no-such-link-here")
    err = await _recv_json(ws)
    assert err["code"] == "unknown_link"
    assert await _closed(ws) == 4004


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"type": "cancel"}),
        json.dumps({"type": "knock"}),
        "{{{",
        json.dumps({"type": "knock", "name": "x" * 500}),
    ],
)
async def test_guest_bad_first_frame_closes_1008(
    foyer: FoyerProcess, host: dict[str, Any], frame: str
) -> None:
    ws = await _open(foyer.ws_url + f"/ws/guest/{host['slug']}")
    await ws.send(frame)
    err = await _recv_json(ws)
    assert err["type"] == "error" and err["code"] in ("bad_message", "bad_frame")
    assert await _closed(ws) == 1008


async def test_guest_no_knock_in_time_closes_4008(quick_hello: FoyerProcess) -> None:
    host = quick_hello.create_host("Slow Guest Host")
    ws = await _open(quick_hello.ws_url + f"/ws/guest/{host['slug']}")
    assert await _closed(ws, within=4) == 4008  # well before the default 5 s


async def test_guest_bad_later_frame_gets_error(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Gil") as guest:
        await guest.send_raw(b"\xc1")
        assert (await guest.wait_for(Error)).code == ErrorCode.BAD_FRAME
        await guest.send(Knock(name="again"))
        assert (await guest.wait_for(Error)).code == ErrorCode.BAD_MESSAGE
        assert (await guest.ping()).type == "pong"


async def test_subprotocols(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    ws = await _open(foyer.ws_url + f"/ws/guest/{host['slug']}", proto=None)
    assert ws.subprotocol is None
    await ws.send(json.dumps({"type": "knock", "name": "Plain"}))
    assert (await _recv_json(ws))["type"] == "waiting"  # JSON when none offered
    await ws.close()
    with pytest.raises(InvalidStatus):
        await _open(foyer.ws_url + f"/ws/guest/{host['slug']}", proto="chat.v9")


async def test_one_bad_peer_does_not_disturb_others(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        bad = await _open(foyer.ws_url + f"/ws/guest/{host['slug']}")
        await bad.send("garbage")
        async with GuestClient(foyer.ws_url, host["slug"], name="Fine") as guest:
            jr = await device.wait_for(JoinRequest)
            assert jr.guest["id"] == guest.waiting.guest
        assert await _closed(bad) == 1008


async def test_a_host_token_without_exp_closes_4001(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """A leaked token without an end would open the lobby for good."""
    forever = jwt.encode({"sub": host["id"]}, foyer.secret, algorithm="HS256")
    ws = await _open(foyer.ws_url + "/ws/host")
    await ws.send(json.dumps({"type": "hello", "token": forever}))
    err = await _recv_json(ws)
    assert err["code"] == "unauthorized" and "exp" in err["message"]
    assert await _closed(ws) == 4001


@pytest.mark.parametrize(
    "knock",
    [
        {"type": "knock", "name": "Eve\r\nBcc: evil@example.com"},
        {"type": "knock", "name": "Eve\x00"},
        {"type": "knock", "name": "Eve", "email": "eve@example.com\nBcc: x@example.com"},
        {"type": "knock", "name": "Eve", "options": {"title": "Hi\u0007"}},
    ],
)
async def test_control_characters_are_refused_at_decode(
    foyer: FoyerProcess, host: dict[str, Any], knock: dict[str, Any]
) -> None:
    """A name with CR/LF used to break the away email (and burn its cool-down)."""
    ws = await _open(foyer.ws_url + f"/ws/guest/{host['slug']}")
    await ws.send(json.dumps(knock))
    err = await _recv_json(ws)
    assert err["type"] == "error" and err["code"] == "bad_message"
    assert await _closed(ws) == 1008


async def test_a_lone_surrogate_in_an_option_name_is_refused(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """It used to be stored, and the guest's writer died on it: no answer, ever."""
    ws = await _open(foyer.ws_url + f"/ws/guest/{host['slug']}")
    await ws.send('{"type": "knock", "name": "Eve", "options": {"\\ud800x": "1"}}')
    err = await _recv_json(ws)
    assert err["type"] == "error" and err["code"] == "bad_message"
    assert await _closed(ws) == 1008
