"""The webhook provider against a real HTTP receiver on 127.0.0.1: a signed
request, the integrator's URL answered back; errors, bad answers, timeouts
and refused private targets are a clear ``ProviderFailed``, and a booking
whose provider failed is not stored at all (a retry with its key works)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from protocol.errors import ProviderFailed
from server.meetings.bookings import BookingRequest, Bookings
from server.meetings.connections import Connections
from server.meetings.events import MeetingEvents
from server.meetings.planned import PlannedMeetings
from server.meetings.provider import MeetingOrder, WebhookProvider
from server.notify.webhooks import WebhookConfig, check_target
from server.storage.batcher import Batcher

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
Answer = Callable[[dict[str, Any]], tuple[int, bytes]]


class Integrator:
    """A real HTTP server in a thread that makes meetings as ``answer`` says."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()  # a "hang" answer waits on it
        self.answer: Answer = lambda e: (200, json.dumps({"url": "https://v.example/x"}).encode())
        integrator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                integrator.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, reply = integrator.answer(json.loads(body))
                if status == 0:
                    integrator.release.wait(10)
                    status = 200
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/meetings"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Integrator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def integrator() -> Iterator[Integrator]:
    with Integrator() as server:
        yield server


def _provider(
    url: str, *, allow: tuple[str, ...] = ("127.0.0.1",), timeout: float = 5.0
) -> WebhookProvider:
    config = WebhookConfig(allow=allow)

    async def check(target: str) -> None:
        await check_target(target, config)

    return WebhookProvider(url, SECRET, check, timeout_s=timeout)


ORDER = MeetingOrder("m" + "0" * 20, "ada", "Intro", 1, 2, "ws1", "ada@video")


async def test_the_request_is_signed_and_the_answered_url_is_the_meeting(
    integrator: Integrator,
) -> None:
    integrator.answer = lambda e: (
        200,
        json.dumps({"url": f"https://v.example/{e['data']['meeting_id']}"}).encode(),
    )
    url = await _provider(integrator.url).create(ORDER)
    assert url == f"https://v.example/{ORDER.meeting_id}"
    ((headers, body),) = integrator.requests
    event = Webhook(SECRET).verify(body, headers)
    assert event["type"] == "meeting.create" and headers["webhook-id"] == ORDER.meeting_id
    assert event["data"] == {
        "meeting_id": ORDER.meeting_id,
        "host": "ada",
        "title": "Intro",
        "starts_at": 1,
        "ends_at": 2,
        "workspace": "ws1",
        "account": "ada@video",
    }


@pytest.mark.parametrize(
    ("status", "reply", "words"),
    [
        (500, b"{}", "answered HTTP 500"),
        (200, b"not json", 'must answer JSON {"url"'),
        (200, b'{"url": "javascript:alert(1)"}', "not http"),
        (200, b'{"id": 1}', 'must answer JSON {"url"'),
    ],
)
async def test_errors_and_bad_answers_are_provider_failed(
    integrator: Integrator, status: int, reply: bytes, words: str
) -> None:
    integrator.answer = lambda e: (status, reply)
    with pytest.raises(ProviderFailed, match=words):
        await _provider(integrator.url).create(ORDER)


async def test_a_provider_that_does_not_answer_in_time_fails_clearly(
    integrator: Integrator,
) -> None:
    integrator.answer = lambda e: (0, b"{}")
    with pytest.raises(ProviderFailed, match=r"did not answer within 0.3 s"):
        await _provider(integrator.url, timeout=0.3).create(ORDER)


async def test_a_private_target_is_refused_unless_allow_listed(integrator: Integrator) -> None:
    with pytest.raises(ProviderFailed, match="private address"):
        await _provider(integrator.url, allow=()).create(ORDER)
    assert integrator.requests == []  # never called


async def test_a_failed_provider_leaves_no_booking_and_no_meeting(
    batch: Batcher, integrator: Integrator
) -> None:
    events = MeetingEvents()
    meetings = PlannedMeetings(batch, {"webhook": _provider(integrator.url)}, "webhook", events)
    connections = Connections(batch)
    bookings = Bookings(batch, connections, meetings, events)
    ws, ada = "ws-" + uuid.uuid4().hex[:8], "ada-" + uuid.uuid4().hex[:8]
    await connections.connect(ws, ada, "webhook", "ada@video")
    wanted = BookingRequest(ada, "Intro", 1_893_456_000_000, 1_893_459_600_000)
    integrator.answer = lambda e: (503, b"{}")
    with pytest.raises(ProviderFailed):
        await bookings.create(ws, wanted, "k1")
    assert await bookings.for_host(ada) == [] and await meetings.for_host(ada) == []
    integrator.answer = lambda e: (200, b'{"url": "https://v.example/ok"}')
    booking, made = await bookings.create(ws, wanted, "k1")  # the retry makes it
    assert made and booking.url == "https://v.example/ok"
    ids = [headers["webhook-id"] for headers, _ in integrator.requests]
    assert ids == [booking.meeting, booking.meeting]  # the retry asked for the same meeting
    assert [m.id for m in await meetings.for_host(ada)] == [booking.meeting]
