"""``FOYER_LOG_FORMAT=json`` (issue 10, point 9): every line a JSON object,
uvicorn's lines included, with the socket's ids where known, and never a
secret (keys, tokens, resume secrets) even at debug level."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from foyer_client import GuestClient, HostClient, JoinRequest
from protocol.errors import Unauthorized
from tests.support import FoyerProcess


async def test_json_logs_carry_ids_and_no_secret(redis_url: str) -> None:
    proc = FoyerProcess(
        redis_url,
        {"FOYER_LOG_FORMAT": "json", "FOYER_LOG_LEVEL": "debug", "FOYER_DEMO": "true"},
    ).start()
    secrets = [proc.secret, proc.api_key]
    try:
        host = proc.create_host("Logged Host")
        secrets.append(host["token"])
        bad = host["token"][:-4] + "AAAA"  # a token whose signature is wrong
        secrets.append(bad)
        with pytest.raises(Unauthorized):
            async with HostClient(proc.ws_url, bad):
                pass
        async with (
            HostClient(proc.ws_url, host["token"]) as device,
            GuestClient(proc.ws_url, host["slug"], name="Logged Guest", codec="json") as guest,
        ):
            secrets.append(guest.waiting.resume)
            assert (await device.wait_for(JoinRequest)).guest["id"] == guest.waiting.guest
            await device.admit(guest.waiting.guest)
        gid = guest.waiting.guest
    finally:
        proc.stop(signal.SIGTERM)
    text = proc.log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    records: list[dict[str, Any]] = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    loggers = {r["logger"] for r in records}
    assert "uvicorn.error" in loggers and any(name.startswith("foyer.") for name in loggers)
    assert any(r.get("host") == host["id"] and r.get("conn") for r in records)
    assert any(r.get("guest") == gid for r in records)
    for secret in secrets:
        # Not even a piece of one: websockets' debug lines print frames cut
        # short, as text (JSON) or hex (msgpack); a tail is the secret part.
        tail = secret[-8:]
        hex_tail = " ".join(f"{b:02x}" for b in tail.encode())
        assert tail not in text and hex_tail not in text, f"a secret's tail is in the log: {tail}"
    assert proc.log_path.stat().st_size < 1 << 20
