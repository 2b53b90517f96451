"""A real CalDAV server for the suite: Radicale on 127.0.0.1, with users of
its own, and the user's side played with the ``caldav`` library's client
(raw PUT/GET, so the bytes on the server are what the test wrote)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from caldav.davclient import DAVClient
from requests.auth import HTTPBasicAuth

from server.ops.embedded import free_port


@dataclass
class Radicale:
    url: str  # http://127.0.0.1:port
    users: dict[str, str]
    process: subprocess.Popen[bytes] | None
    log: Path
    folder: Path

    def write_users(self) -> None:
        """Write ``users`` to the password file (Radicale reads it per request)."""
        write_users(self.folder, self.users)

    def start(self) -> None:
        """Start (or start again, on the same port and data: a server that was down)."""
        port = int(self.url.rsplit(":", 1)[1])
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(self.folder / "config")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("radicale did not start: " + self.log.read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def client(self, user: str, password: str | None = None) -> DAVClient:
        return DAVClient(
            url=self.url + "/",
            auth=HTTPBasicAuth(user, self.users[user] if password is None else password),
            timeout=15,
        )

    def calendar(self, user: str, name: str) -> str:
        """A new calendar collection of ``user``; its URL (with a trailing slash)."""
        client = self.client(user)
        home = f"{self.url}/{user}/"
        client.request(home, "MKCOL")  # the user's home (405 when it exists)
        url = f"{home}{name}/"
        response = client.request(url, "MKCALENDAR")
        assert response.status == 201, response.status
        return url

    def put(self, user: str, url: str, data: bytes, etag: str | None = None) -> int:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if etag:
            headers["If-Match"] = etag
        return int(self.client(user).request(url, "PUT", data.decode(), headers).status)

    def get(self, user: str, url: str) -> tuple[bytes, str] | None:
        response = self.client(user).request(url, "GET")
        if response.status == 404:
            return None
        assert response.status == 200, response.status
        return bytes(response._raw), str(response.headers.get("ETag") or "")

    def delete(self, user: str, url: str) -> int:
        return int(self.client(user).request(url, "DELETE").status)


def write_users(folder: Path, users: dict[str, str]) -> None:
    (folder / "users").write_text("".join(f"{u}:{p}\n" for u, p in users.items()))


@contextlib.contextmanager
def radicale_server(users: dict[str, str]) -> Iterator[Radicale]:
    with tempfile.TemporaryDirectory(prefix="foyer-radicale-") as tmp:
        folder = Path(tmp)
        write_users(folder, users)
        port = free_port()
        (folder / "config").write_text(
            f"[server]\nhosts = 127.0.0.1:{port}\n"
            f"[auth]\ntype = htpasswd\nhtpasswd_filename = {folder / 'users'}\n"
            "htpasswd_encryption = plain\n"
            f"[storage]\nfilesystem_folder = {folder / 'collections'}\n"
            "[rights]\ntype = owner_only\n[logging]\nlevel = warning\n"
        )
        server = Radicale(
            f"http://127.0.0.1:{port}", dict(users), None, folder / "radicale.log", folder
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
