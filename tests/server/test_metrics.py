"""``GET /metrics`` on real ``foyer serve`` processes: a knock, a winning and a
losing reply move the counters by exactly that; ``--workers 2`` adds up both
workers; the token guards the route; ``FOYER_METRICS=false`` records nothing.
Also: the Grafana dashboard and the operations page cover every metric."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, Denied, JoinRequest
from server.metrics import Metrics
from tests.support import FoyerProcess, metric_samples, spawn_foyer, try_reply

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-me-please"
QUEUED = 'foyer_knocks_total{result="queued"}'
DEVICES = 'foyer_connections{role="host_device"}'
GUESTS = 'foyer_connections{role="guest"}'
WAITING = "foyer_guests_waiting"
DELIVERED = "foyer_knock_delivery_seconds_count"


def scrape(proc: FoyerProcess, token: str | None = TOKEN) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(proc.http_url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return metric_samples(r.text)


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Every sample that changed, by how much (histogram buckets left out)."""
    return {
        k: after[k] - before.get(k, 0.0)
        for k in after
        if after[k] != before.get(k, 0.0)
        and "_bucket" not in k
        and "process" not in k
        and "event_loop_lag" not in k  # observed all the time, by a timer
        and "foyer_gc_" not in k  # every collection, whatever the test does
    }


async def until(proc: FoyerProcess, name: str, value: float) -> dict[str, float]:
    """Scrape until ``name`` reads ``value`` (a socket's clean-up runs after the
    client saw its close); bounded."""
    for _ in range(100):
        now = scrape(proc)
        if now.get(name) == value:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} = {now.get(name)}, expected {value}")


@pytest.fixture(scope="module")
def metered(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, {"FOYER_METRICS_TOKEN": TOKEN}) as proc:
        yield proc


async def test_a_knock_and_two_racing_replies(metered: FoyerProcess) -> None:
    host = metered.create_host("Metered Host")
    before = scrape(metered)
    async with (
        HostClient(metered.ws_url, host["token"]) as d1,
        HostClient(metered.ws_url, host["token"]) as d2,
    ):
        assert scrape(metered)[DEVICES] == before[DEVICES] + 2
        async with GuestClient(metered.ws_url, host["slug"], name="Counted") as guest:
            gid = guest.waiting.guest
            await d1.wait_for(JoinRequest)
            await d2.wait_for(JoinRequest)
            waiting = scrape(metered)
            assert waiting[GUESTS] == before[GUESTS] + 1
            assert waiting[WAITING] == before[WAITING] + 1
            won = await asyncio.gather(try_reply(d1, "admit", gid), try_reply(d2, "deny", gid))
            assert sorted(won) == [False, True]
            await guest.wait_for(Admitted, Denied)
        winner, loser = ("admit", "deny") if won[0] else ("deny", "admit")
        after = await until(metered, GUESTS, before[GUESTS])
    after = await until(metered, DEVICES, before[DEVICES])
    assert after[WAITING] == before[WAITING]
    changed = moved(before, after)
    delivery_sum = changed.pop("foyer_knock_delivery_seconds_sum", 0.0)
    assert changed == {
        QUEUED: 1,
        f'foyer_replies_total{{action="{winner}",result="won"}}': 1,
        f'foyer_replies_total{{action="{loser}",result="already_resolved"}}': 1,
        DELIVERED: 1,  # one observation per knock, however many devices got it
    }
    assert 0 <= delivery_sum < 5


def test_the_token_guards_the_route(metered: FoyerProcess) -> None:
    url = metered.http_url + "/metrics"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    assert httpx.get(url, headers={"Authorization": f"Bearer {metered.api_key}"}).status_code == 401
    assert QUEUED in scrape(metered)


def _per_worker(folder: Path) -> dict[str, float]:
    """Queued knocks in each worker's own counter file, read one file at a time."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for path in sorted(folder.glob("counter_*.db")):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
            counts[path.stem] = registry.get_sample_value(
                "foyer_knocks_total", {"result": "queued"}
            )
    return {k: v for k, v in counts.items() if v}


async def test_two_workers_are_added_up(redis_url: str) -> None:
    proc = FoyerProcess(redis_url, {"FOYER_METRICS_TOKEN": TOKEN}, workers=2)
    folder = proc.data_dir / f"prometheus-{proc.port}"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left over from an earlier run")
    with proc:
        assert not (folder / "counter_1.db").exists()  # emptied before the workers started
        for _ in range(300):  # both workers built their metrics (bounded: 30 s)
            if len(list(folder.glob("gauge_livesum_*.db"))) == 2:
                break
            await asyncio.sleep(0.1)
        host = proc.create_host("Two Workers")
        before = scrape(proc)[QUEUED]
        knocks = 0

        async def knock(n: int) -> None:
            async with GuestClient(proc.ws_url, host["slug"], name=f"W{n}") as guest:
                assert guest.waiting.position >= 1

        for _ in range(6):  # until both workers took some knocks (the kernel picks)
            await asyncio.gather(*(knock(knocks + i) for i in range(20)))
            knocks += 20
            if len(_per_worker(folder)) == 2:
                break
        per_worker = _per_worker(folder)
        assert len(per_worker) == 2, per_worker
        assert sum(per_worker.values()) == before + knocks
        for _ in range(4):  # whichever worker answers the scrape, it adds up both
            assert scrape(proc)[QUEUED] == before + knocks


def test_metrics_can_be_switched_off(redis_url: str) -> None:
    with spawn_foyer(redis_url, {"FOYER_METRICS": "false"}) as proc:
        r = httpx.get(proc.http_url + "/metrics")
        assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_off_records_nothing_and_on_records_each_call() -> None:
    off, on = Metrics(enabled=False), Metrics()
    for metrics in (off, on):
        metrics.knocked("rate_limited")
        metrics.replied("merge", "error")
        metrics.redis_error("pubsub")
        metrics.recovery("failed")
        metrics.email("sent")
        metrics.delivered(0)
    assert off.exposition()[0] == b""
    samples = metric_samples(on.exposition()[0].decode())
    assert samples['foyer_knocks_total{result="rate_limited"}'] == 1
    assert samples['foyer_replies_total{action="merge",result="error"}'] == 1
    assert samples['foyer_redis_errors_total{source="pubsub"}'] == 1
    assert samples['foyer_pubsub_recoveries_total{result="failed"}'] == 1
    assert samples['foyer_emails_total{result="sent"}'] == 1
    assert samples['foyer_knock_delivery_seconds_bucket{le="+Inf"}'] == 1
    assert samples['foyer_knock_delivery_seconds_bucket{le="10.0"}'] == 0


def _expressions(panels: list[dict[str, Any]]) -> str:
    text = []
    for panel in panels:
        text += [t.get("expr", "") for t in panel.get("targets", [])]
        text.append(_expressions(panel.get("panels", [])))
    return "\n".join(text)


def test_dashboard_and_docs_cover_every_metric() -> None:
    families = Metrics().families()
    assert len(families) == 11
    dashboard = json.loads((ROOT / "docs" / "grafana-foyer.json").read_text())
    exprs = _expressions(dashboard["panels"])
    doc = (ROOT / "docs" / "operations-metrics.md").read_text()
    for name in families:
        assert name in exprs, f"no Grafana panel for {name}"
        assert f"`{name}" in doc, f"{name} is not described in docs/operations-metrics.md"


async def test_the_event_loop_lag_is_watched(metered: FoyerProcess) -> None:
    """A timer due every 50 ms: its lateness lands in the histogram, and an
    idle process shows no lag worth a bucket over a second."""
    first = scrape(metered)["foyer_event_loop_lag_seconds_count"]
    await asyncio.sleep(0.5)
    later = scrape(metered)
    assert later["foyer_event_loop_lag_seconds_count"] >= first + 4
    assert (
        later['foyer_event_loop_lag_seconds_bucket{le="1.0"}']
        == (later["foyer_event_loop_lag_seconds_count"])
    )


async def test_collections_are_timed(metered: FoyerProcess) -> None:
    """The GC policy's young collection before each freeze (every second) is
    timed."""
    first = scrape(metered).get('foyer_gc_pause_seconds_count{generation="1"}', 0.0)
    for _ in range(60):  # bounded: 6 s
        await asyncio.sleep(0.1)
        later = scrape(metered)
        if later.get('foyer_gc_pause_seconds_count{generation="1"}', 0.0) >= first + 2:
            break
    assert later['foyer_gc_pause_seconds_count{generation="1"}'] >= first + 2
