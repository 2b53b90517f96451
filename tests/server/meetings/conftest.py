"""The meetings stores on the suite's real Valkey, through one Batcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from server.meetings.bookings import Bookings
from server.meetings.connections import Connections
from server.meetings.events import MeetingEvents
from server.meetings.planned import PlannedMeetings
from server.meetings.provider import MeetingProvider, TemplateProvider
from server.storage import scripts
from server.storage.batcher import Batcher


@pytest.fixture
async def batch(redis_url: str) -> AsyncIterator[Batcher]:
    redis = Redis.from_url(redis_url)
    batcher = Batcher(redis, scripts.load())
    await batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()
        await redis.aclose()


@dataclass
class Planned:
    connections: Connections
    meetings: PlannedMeetings
    bookings: Bookings
    events: RecordedEvents


class RecordedEvents(MeetingEvents):
    """Keeps what the stores emit, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, kind: str, data: dict[str, Any]) -> None:
        await super().emit(kind, data)
        self.seen.append((kind, data))


TEMPLATE = "https://meet.example.org/{meeting_id}"


@pytest.fixture
async def planned(batch: Batcher) -> Planned:
    template = TemplateProvider(MeetingProvider(TEMPLATE))
    events = RecordedEvents()
    meetings = PlannedMeetings(batch, {"template": template, "foyer": template}, "template", events)
    connections = Connections(batch)
    return Planned(connections, meetings, Bookings(batch, connections, meetings, events), events)
