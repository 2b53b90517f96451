"""A host device swaps in a new token without reconnecting (issue 10, point 11)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from foyer_client import HostClient
from protocol.errors import Unauthorized
from tests.support import FoyerProcess


def _token(foyer: FoyerProcess, host: str, lives_s: float) -> str:
    exp = int(time.time() + lives_s)
    return jwt.encode({"sub": host, "exp": exp}, foyer.secret, algorithm="HS256")


async def test_a_refreshed_device_outlives_its_first_token(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    first = _token(foyer, host["id"], 2)
    async with HostClient(foyer.ws_url, first) as device:
        await device.refresh(_token(foyer, host["id"], 3600))
        expired_at = jwt.decode(first, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expired_at - time.time()) + 1.0)  # past the first token
        assert (await device.ping()).type == "pong"
        assert device.close_code is None


async def test_a_refresh_for_another_host_or_expired_is_refused(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    other = foyer.create_host("Someone Else")
    async with HostClient(foyer.ws_url, host["token"]) as device:
        with pytest.raises(Unauthorized, match="not this host"):
            await device.refresh(other["token"])
        with pytest.raises(Unauthorized, match="expired"):
            await device.refresh(_token(foyer, host["id"], -10))
        assert (await device.ping()).type == "pong"  # refused, and still connected
