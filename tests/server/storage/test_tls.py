"""``rediss://``: the Batcher's link and the pub/sub connection take a TLS
socket over as they take a plain one (``transport.set_protocol`` on the TLS
layer's transport), on asyncio's loop and on uvloop's. Valkey runs behind a TLS
terminator of the suite's own on 127.0.0.1 (the embedded Valkey is built
without TLS), with a certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from server.storage.batcher import Batcher
from server.storage.pubsub import SubscriberConnection, connector
from tests.chaos.proxy import FaultProxy
from tests.support import valkey_server

ECHO = {"echo": "return ARGV[1]"}


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foyer-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultProxy, Path]]:
    cert, key = _certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with valkey_server() as server, FaultProxy(server.port, tls=context) as proxy:
        yield proxy, cert


async def _next(queue: asyncio.Queue[Any]) -> Any:
    async with asyncio.timeout(10):
        return await queue.get()


async def _scenario(proxy: FaultProxy, cert: Path) -> None:
    """A script call and a message over TLS; then every connection is reset, and
    both come back (a command that may replay does, the channel is subscribed
    again)."""
    redis = Redis.from_url(proxy.url, ssl_ca_certs=str(cert))
    batcher = Batcher(redis, dict(ECHO))
    messages: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
    subscribed: asyncio.Queue[bytes] = asyncio.Queue()
    pool = redis.connection_pool
    sub = SubscriberConnection(
        connector(pool.connection_class, pool.connection_kwargs),
        on_message=lambda channel, data: messages.put_nowait((channel, data)),
        on_subscribed=subscribed.put_nowait,
    )
    channel = f"tls-{uuid.uuid4().hex[:8]}"
    try:
        await batcher.start()
        assert await batcher.script("echo", [], ["over tls"]) == b"over tls"
        await sub.open()
        sub.start()
        sub.subscribe(channel)
        assert await _next(subscribed) == channel.encode()
        await batcher.call("PUBLISH", channel, b"first")
        assert await _next(messages) == (channel.encode(), b"first")

        assert proxy.reset_all() >= 2
        # A plain command may go again after a loss (a script may not: it fails
        # if the link dies under it, which here it may, whichever sees it first).
        assert await batcher.call("ECHO", "again") == b"again"
        assert await batcher.script("echo", [], ["on the new link"]) == b"on the new link"
        assert await _next(subscribed) == channel.encode()  # after the reconnect
        await batcher.call("PUBLISH", channel, b"second")
        assert await _next(messages) == (channel.encode(), b"second")
    finally:
        await sub.stop()
        await batcher.stop()
        await redis.aclose()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_links_over_tls_work_and_come_back(tls_proxy: tuple[FaultProxy, Path], loop: str) -> None:
    proxy, cert = tls_proxy
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(_scenario(proxy, cert))
