"""``foyer serve``: start Foyer for real.

With no ``FOYER_REDIS_URL`` it starts the embedded Valkey (append-only files
under ``FOYER_DATA_DIR``), shares it with every worker and stops it on exit.
With no ``FOYER_SECRET`` / ``FOYER_API_KEY`` it makes dev values, keeps them
in the data dir and prints them once at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import redis
import uvicorn
from pydantic import ValidationError

from protocol.codec import MAX_FRAME
from protocol.errors import EmbeddedStoreError, HostExists
from server import logs
from server.metrics import prepare_multiprocess_dir
from server.ops.config import Settings
from server.ops.embedded import EmbeddedValkey
from server.ops.front_protocol import FrontProtocol
from server.storage import scripts
from server.storage.batcher import Batcher
from server.storage.hosts import HostRecord, HostStore
from server.storage.redis_client import is_cluster, open_redis

log = logging.getLogger("foyer.cli")

DEMO_HOST = "demo"
DEMO_NAME = "Demo Host"
# Where the demo host's email goes while mail is written to the outbox (no SMTP):
# a knock with the console closed then leaves an email to open, reply links and
# all. With SMTP set, the demo host has no address (nothing goes to example.com).
DEMO_EMAIL = "demo@example.com"


def _dev_secrets(data_dir: Path) -> tuple[dict[str, str], bool]:
    """The dev secrets kept in the data folder, and whether they were made just now."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored, False
    values = {"secret": secrets.token_urlsafe(32), "api_key": secrets.token_urlsafe(24)}
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values, True


async def _demo(settings: Settings) -> HostRecord:
    """Make sure the demo host exists; returns its record."""
    assert settings.redis_url
    cluster = (
        is_cluster(settings.redis_url) if settings.redis_cluster is None else settings.redis_cluster
    )
    redis = open_redis(settings.redis_url, cluster)
    batch = Batcher(redis, scripts.load())
    await batch.start()
    try:
        hosts = HostStore(batch)
        record = await hosts.get_host(DEMO_HOST)
        if record is None:
            email = DEMO_EMAIL if settings.mail_outbox and not settings.smtp_url else None
            try:
                record = await hosts.create_host(DEMO_HOST, DEMO_NAME, email)
            except HostExists:
                record = await hosts.require_host(DEMO_HOST)
        return record
    finally:
        await batch.stop()
        await redis.aclose()


def port_taken(host: str, port: int) -> str | None:
    """Why Foyer could not listen on ``host:port``, found before anything starts
    (uvicorn finds out only after the store has started and the banner has
    pointed at whatever else holds the port). Binds as uvicorn does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"{host}:{port} is in use (another Foyer?): stop it, "
                    "or choose another --port (FOYER_PORT)"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


STORE_WAIT_S = 5.0  # a store started beside Foyer (compose, systemd) gets this long


def shown_url(url: str) -> str:
    """``url`` without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    where = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=where).geturl()


def store_problem(url: str, wait_s: float = STORE_WAIT_S) -> str | None:
    """Why the store at ``url`` cannot be used, found before anything starts (the
    app's start-up would end in a traceback): unreachable for ``wait_s``, or it
    refuses the password. None: it answers PING."""
    deadline = time.monotonic() + wait_s
    while True:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
            return None
        except redis.AuthenticationError as exc:
            where = shown_url(url)
            return f"the store at {where} refused the credentials ({exc}): check FOYER_REDIS_URL"
        except (redis.RedisError, OSError) as exc:
            if time.monotonic() >= deadline:
                return (
                    f"the store at {shown_url(url)} does not answer ({exc}): "
                    "check FOYER_REDIS_URL, or leave it unset for the embedded Valkey"
                )
        finally:
            client.close()
        time.sleep(0.25)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Fill in what the environment left unset (dev secrets, the embedded
    Valkey, the listen URL), then run uvicorn."""
    taken = port_taken(args.host, args.port)
    if taken is not None:
        print(f"foyer: {taken}", file=sys.stderr)
        return 2
    env: dict[str, str] = {}
    generated = []  # the settings taken from the dev file
    made = False  # whether that file was written just now
    if not settings.secret or not settings.api_key:
        dev, made = _dev_secrets(settings.data_dir)
        if not settings.secret:
            env["FOYER_SECRET"] = dev["secret"]
            generated.append("FOYER_SECRET")
        if not settings.api_key:
            env["FOYER_API_KEY"] = dev["api_key"]
            generated.append("FOYER_API_KEY")
    valkey: EmbeddedValkey | None = None
    if not settings.redis_url:
        valkey = EmbeddedValkey(settings.data_dir / "valkey")
        try:
            valkey.start()
        except EmbeddedStoreError as exc:  # the folder is in use, or Valkey would not start
            valkey.stop()
            print(f"foyer: {exc}", file=sys.stderr)
            return 2
        env["FOYER_REDIS_URL"] = valkey.url
    else:
        problem = store_problem(settings.redis_url)
        if problem is not None:
            print(f"foyer: {problem}", file=sys.stderr)
            return 2
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown}:{args.port}"
    env["FOYER_LISTEN_URL"] = base  # for emails without PUBLIC_URL
    if args.workers > 1 and settings.metrics:  # every worker writes, any scrape adds up
        prepare_multiprocess_dir(settings.data_dir / f"prometheus-{args.port}")
    # uvicorn builds the app in its own process for each worker, and each
    # builds its Settings from the environment (server.app.create_app): so
    # what was decided here reaches them through os.environ. This process
    # takes the same values without reading the environment again.
    os.environ.update(env)
    settings = settings.model_copy(
        update={
            "secret": env.get("FOYER_SECRET", settings.secret),
            "api_key": env.get("FOYER_API_KEY", settings.api_key),
            "redis_url": env.get("FOYER_REDIS_URL", settings.redis_url),
            "listen_url": base,
        }
    )
    logs.configure(settings.log_level, settings.log_format)
    try:
        where = f"embedded Valkey, data in {settings.data_dir}" if valkey else "FOYER_REDIS_URL"
        kept = settings.data_dir / "dev-secrets.json"
        outbox = settings.data_dir / "outbox"
        if settings.log_format == "json":
            # Log lines only, and never a secret: the dev values stay in their file.
            log.info("Foyer on %s (store: %s)", base, where)
            if settings.mail_outbox and not settings.smtp_url:
                log.info("no FOYER_SMTP_URL: emails are written to %s", outbox)
            if generated:
                how = "generated and kept in" if made else "read from"
                log.info("dev secrets (%s) %s %s", ", ".join(generated), how, kept)
        else:
            print(f"Foyer on {base}  (store: {where})", flush=True)
            if settings.mail_outbox and not settings.smtp_url:
                print(f"No FOYER_SMTP_URL: emails are written to {outbox}/", flush=True)
            if generated:
                how = "generated and kept in" if made else "read from"
                print(f"Dev secrets {how} {kept}:", flush=True)
                for name in generated:  # dev values only; real ones are never printed
                    value = settings.secret if name == "FOYER_SECRET" else settings.api_key
                    print(f"  {name}={value}", flush=True)
        if settings.demo:
            from server.access.tokens import Tokens

            record = asyncio.run(_demo(settings))
            link = f"{base}/l/{record.get('slug', '')}"
            if settings.log_format == "json":
                log.info(
                    "demo host: personal link %s (POST /api/hosts/demo/token for a token)", link
                )
            else:
                assert settings.secret
                token = Tokens(settings.secret).host_token(DEMO_HOST)
                print(f"Host console:  {base}/host#token={token}", flush=True)
                print(f"Personal link: {link}", flush=True)
                if record.get("email") and settings.mail_outbox and not settings.smtp_url:
                    print(
                        f"Knock with the console closed: the email to {record['email']} "
                        f"lands in {outbox}/",
                        flush=True,
                    )
        # The protocol class with its timeout bound: a partial of a module-level
        # class pickles, so the spawned workers of --workers N get it too.
        http = functools.partial(FrontProtocol, header_timeout=settings.header_timeout)
        uvicorn.run(
            "server.app:create_app",
            http=cast("type[asyncio.Protocol]", http),
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers if args.workers > 1 else None,
            loop="uvloop",
            ws="websockets-sansio",
            ws_max_size=MAX_FRAME,
            ws_per_message_deflate=False,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            log_level=settings.log_level.lower(),
            log_config=logs.uvicorn_config(settings.log_format),
            access_log=args.access_log,
            # After the drain (server.app.SigtermDrain) little is left to wait for.
            timeout_graceful_shutdown=1,
            proxy_headers=False,  # FOYER_TRUSTED_PROXIES is the one control (access/origins.py)
        )
    finally:
        if valkey is not None:
            valkey.stop()
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line; ``FOYER_HOST``/``FOYER_PORT`` (Settings) are the defaults."""
    settings_note = (
        "Every other setting is an environment variable (FOYER_*): see README.md, "
        "Configuration. With no FOYER_REDIS_URL, Foyer starts its own Valkey with "
        "its data in FOYER_DATA_DIR."
    )
    parser = argparse.ArgumentParser(
        prog="foyer", description="Foyer: a waiting-room signalling server", epilog=settings_note
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    run = sub.add_parser(
        "serve",
        help="start Foyer",
        description="Start Foyer: the HTTP API, the pages and the WebSocket endpoints.",
        epilog=settings_note,
    )
    run.add_argument(
        "--host",
        default=settings.host,
        help=f"address to listen on (FOYER_HOST; now {settings.host})",
    )
    run.add_argument(
        "--port", type=int, default=settings.port, help=f"port (FOYER_PORT; now {settings.port})"
    )
    run.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="server processes sharing the port (default 1)",
    )
    run.add_argument("--access-log", action="store_true", help="log every HTTP request")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "FOYER_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"foyer: {name}: {error['msg']}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    if args.command == "serve":
        return serve(args, settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
