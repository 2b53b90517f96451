"""``foyer serve`` on the embedded default: a real Valkey it starts and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from server.ops.embedded import free_port

FOYER = str(Path(sys.executable).parent / "foyer")


def _start(
    data_dir: Path, port: int, *extra: str, settings: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FOYER_") and k != "PYTHONASYNCIODEBUG"
    }
    env["FOYER_DATA_DIR"] = str(data_dir)
    env.update(settings or {})
    return subprocess.Popen(
        [FOYER, "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("foyer did not start")


def _valkeys(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if "valkey" in p.name()]


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return out


def _output_at_exit(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """What ``proc`` printed by the time it exited; killed if it runs on (a
    failing test leaves no server behind)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_embedded_valkey_persists_and_leaves_no_orphan(tmp_path: Path, sig: int) -> None:
    port = free_port()
    proc = _start(tmp_path, port)
    _wait_healthy(port, proc)
    (valkey,) = _valkeys(proc)
    key = (tmp_path / "dev-secrets.json").read_text()
    assert "api_key" in key
    import json

    api_key = json.loads(key)["api_key"]
    headers = {"Authorization": f"Bearer {api_key}"}
    r = httpx.post(
        f"http://127.0.0.1:{port}/api/hosts",
        headers=headers,
        json={"id": "kept", "name": "Kept Host"},
    )
    assert r.status_code == 201
    out = _stop(proc, sig)
    assert f"FOYER_API_KEY={api_key}" in out and "/host#token=" in out
    assert "Dev secrets generated and kept in" in out
    valkey.wait(timeout=10)
    assert not valkey.is_running()
    assert (tmp_path / "valkey").exists()

    proc = _start(tmp_path, port)
    try:
        _wait_healthy(port, proc)
        r = httpx.get(f"http://127.0.0.1:{port}/api/hosts/kept", headers=headers)
        assert r.status_code == 200 and r.json()["name"] == "Kept Host"
    finally:
        out = _stop(proc, signal.SIGTERM)
    # The second start reads the same secrets; it does not claim to have made them.
    assert f"FOYER_API_KEY={api_key}" in out
    assert "Dev secrets read from" in out and "generated" not in out


def test_workers_share_one_valkey(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port, "--workers", "2")
    try:
        _wait_healthy(port, proc)
        assert len(_valkeys(proc)) == 1
        workers = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "valkey" not in p.name()
        ]
        assert len(workers) >= 2
    finally:
        _stop(proc, signal.SIGTERM)
    assert not _valkeys_alive(tmp_path)


def _valkeys_alive(data_dir: Path) -> list[psutil.Process]:
    alive = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if "valkey" in (p.info["name"] or "") and str(data_dir.resolve()) in " ".join(
                p.info["cmdline"] or []
            ):
                alive.append(p)
        except psutil.Error:
            continue
    return alive


def test_host_and_port_default_to_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.ops.cli import build_parser
    from server.ops.config import Settings

    monkeypatch.setenv("FOYER_HOST", "0.0.0.0")
    monkeypatch.setenv("FOYER_PORT", "9123")
    parser = build_parser(Settings())
    args = parser.parse_args(["serve"])
    assert (args.host, args.port) == ("0.0.0.0", 9123)
    args = parser.parse_args(["serve", "--host", "::1", "--port", "8001"])
    assert (args.host, args.port) == ("::1", 8001)  # the command line wins


@pytest.mark.parametrize("port", ["eighty", "70000"])
def test_bad_port_is_reported_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    from server.ops.cli import main

    monkeypatch.setenv("FOYER_PORT", port)
    monkeypatch.setenv("FOYER_DATA_DIR", "/nonexistent/foyer-must-not-start")
    assert main(["serve"]) == 2
    assert "FOYER_PORT" in capsys.readouterr().err


def test_the_demo_host_mails_to_the_outbox(tmp_path: Path) -> None:
    """``make run`` as a new user meets it: no SMTP, so mail is written to the
    outbox, and the demo host has an address there; a knock with no console
    open is told the host was notified, and the email is a file to open."""
    import asyncio

    from foyer_client import GuestClient

    port = free_port()
    proc = _start(tmp_path, port, settings={"FOYER_MAIL_DELAY": "0.2"})
    try:
        _wait_healthy(port, proc)

        async def knock() -> bool | None:
            async with GuestClient(f"ws://127.0.0.1:{port}", "demo-host", name="Newcomer") as g:
                notified = g.waiting.host_notified
                outbox = tmp_path / "outbox"
                for _ in range(100):
                    if outbox.is_dir() and list(outbox.glob("*demo@example.com.eml")):
                        return notified
                    await asyncio.sleep(0.1)
                raise AssertionError("no email to the demo host in the outbox")

        assert asyncio.run(knock()) is True
    finally:
        out = _stop(proc, signal.SIGTERM)
    assert "the email to demo@example.com lands in" in out


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path: Path) -> None:
    """It used to start Valkey and print a banner that pointed at whatever held
    the port, then fail in uvicorn."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _start(tmp_path, port)
        out = _output_at_exit(proc)
    assert proc.returncode == 2, out
    assert f"foyer: 127.0.0.1:{port} is in use" in out and "--port" in out
    assert "Host console" not in out and "Traceback" not in out
    assert not (tmp_path / "valkey").exists()  # nothing was started


def test_a_second_foyer_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    """Two embedded Valkeys appending to one folder's files corrupt them (and
    the two servers did not even share their state)."""
    first_port, second_port = free_port(), free_port()
    first = _start(tmp_path, first_port)
    try:
        _wait_healthy(first_port, first)
        second = _start(tmp_path, second_port)
        out = _output_at_exit(second)
        assert second.returncode == 2, out
        assert f"is in use by another Foyer (pid {first.pid})" in out, out
        assert "FOYER_DATA_DIR" in out and "Traceback" not in out
        assert len(_valkeys(first)) == 1
        assert httpx.get(f"http://127.0.0.1:{first_port}/healthz", timeout=5).status_code == 200
    finally:
        _stop(first, signal.SIGTERM)
    # Once the first has stopped, the folder is free again.
    third = _start(tmp_path, second_port)
    try:
        _wait_healthy(second_port, third)
    finally:
        _stop(third, signal.SIGTERM)


@pytest.mark.parametrize(
    ("workers", "said"), [("0", "must be at least 1"), ("two", "not a whole number")]
)
def test_a_bad_worker_count_is_refused(
    capsys: pytest.CaptureFixture[str], workers: str, said: str
) -> None:
    from server.ops.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--workers", workers])
    assert exit_.value.code == 2
    assert f"--workers: {said}" in capsys.readouterr().err


def test_help_says_where_the_settings_are(capsys: pytest.CaptureFixture[str]) -> None:
    from server.ops.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "FOYER_PORT; now" in out and "README.md" in out and "--workers N" in out


def test_a_store_that_does_not_answer_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A wrong FOYER_REDIS_URL ended in redis-py's traceback (with the demo host)
    or uvicorn's (without). It gets a few seconds (a store started beside Foyer),
    then one line, the password hidden."""
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    proc = _start(tmp_path, free_port(), settings={"FOYER_REDIS_URL": dead})
    out = _output_at_exit(proc)
    assert proc.returncode == 2, out
    assert "foyer: the store at redis://:***@127.0.0.1:" in out and "does not answer" in out
    assert "s3cret" not in out and "Traceback" not in out and "Host console" not in out


def test_a_store_that_refuses_the_password_says_so_at_once() -> None:
    import redis

    from server.ops.cli import store_problem
    from tests.support import valkey_server

    with valkey_server() as valkey:
        admin = redis.Redis.from_url(valkey.url)
        admin.config_set("requirepass", "the-password")
        admin.close()
        wrong = valkey.url.replace("redis://", "redis://:not-the-password@", 1)
        started = time.monotonic()
        problem = store_problem(wrong, wait_s=30)
        assert problem is not None and "refused the credentials" in problem, problem
        assert "not-the-password" not in problem and ":***@" in problem
        assert time.monotonic() - started < 10  # no waiting: it will not get better
        right = valkey.url.replace("redis://", "redis://:the-password@", 1)
        assert store_problem(right, wait_s=0) is None
