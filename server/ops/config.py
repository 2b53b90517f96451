"""All configuration in one place: ``FOYER_*`` environment variables.

Defaults are written down in the README's configuration table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.links import DEFAULT_REGIONS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOYER_", extra="ignore")

    redis_url: str | None = None  # None: start the embedded Valkey
    redis_cluster: bool | None = None  # None: ask the server (INFO cluster)
    secret: str | None = None  # HS256 key for host (and guest) JWTs
    api_key: str | None = None  # bearer key of the HTTP API
    data_dir: Path = Path("./var")
    meeting_url: str = "https://meet.jit.si/{meeting_id}"
    public_url: str | None = None  # base URL for links in API answers and emails
    listen_url: str | None = None  # set by ``foyer serve``: where it listens
    allowed_origins: str = ""  # comma-separated; same origin always passes
    trusted_proxies: str = ""  # comma-separated client addresses whose X-Forwarded-For counts
    knock_limit: int = Field(default=30, ge=0)  # knocks per client address per minute
    resume_limit: int = Field(default=10, ge=0)  # failed resumes per address per minute
    link_info_limit: int = Field(default=120, ge=0)  # GET /api/links/{slug} per address/min
    link_knock_limit: int = Field(default=600, ge=0)  # knocks per link per minute
    regions: str = ",".join(DEFAULT_REGIONS)
    resume_window: float = Field(default=30.0, gt=0)  # seconds a dropped guest keeps its place
    hello_timeout: float = Field(default=5.0, gt=0)
    lease: float = Field(default=30.0, ge=1)  # seconds a crashed process's sockets count as live
    send_queue: int = Field(default=4096, ge=8)  # frames buffered per socket before "slow"
    send_queue_bytes: int = Field(default=1 << 20, ge=64 * 1024)  # bytes, likewise
    host: str = "127.0.0.1"  # where ``foyer serve`` listens (``--host`` wins)
    port: int = Field(default=8000, ge=0, le=65535)  # likewise (``--port`` wins)
    position_interval: float = Field(default=1.0, ge=0)  # guests hear of departures this often
    sweep_interval: float = Field(default=0.5, gt=0)  # seconds between expiry/lease sweeps
    unsubscribe_after: float = Field(default=30.0, ge=0)  # idle channel kept subscribed
    subscribe_timeout: float = Field(default=5.0, gt=0)  # wait for Redis to confirm
    redis_pool_size: int = Field(default=50, ge=2)  # pooled connections (pub/sub, start-up)
    header_timeout: float = Field(default=10.0, gt=0)  # a request's headers, from connect
    # Seconds between full sweeps of the garbage collector (server/ops/gc_policy.py);
    # 0: never (long-lived objects are then freed by reference counting alone).
    gc_sweep_interval: float = Field(default=3600.0, ge=0)
    # Seconds between freezes of the survivors; 0: the interpreter's own schedule.
    gc_freeze_interval: float = Field(default=1.0, ge=0)
    drain_timeout: float = Field(default=10.0, gt=0)  # SIGTERM -> exit, at the latest
    close_timeout: float = Field(default=2.0, ge=0)  # a closing socket's last frames
    token_max_lifetime: int = Field(default=30 * 24 * 3600, ge=60)  # seconds; longer: refused
    write_timeout: float = Field(default=10.0, gt=0)  # a peer that stops reading is dropped
    smtp_url: str | None = None  # smtp://user:pass@host:port[?starttls=true] or smtps://
    mail_from: str = "Foyer <foyer@localhost>"
    mail_delay: float = Field(default=10.0, ge=0)  # seconds to gather knocks into one email
    mail_outbox: bool = True  # with no SMTP server, write emails as .eml files to the outbox
    reply_link_ttl: int = Field(default=24 * 3600, ge=60)  # seconds an email's reply link works
    mail_cooldown: float = Field(default=300.0, ge=0)  # at most one email per host per this
    webhook_url: str | None = None  # the deployment's webhook endpoint (none: webhooks off)
    webhook_secret: str | None = None  # whsec_<base64>: signs every delivery
    webhook_allow: str = ""  # comma-separated hosts/CIDRs a private-address target may use
    webhook_attempts: int = Field(default=15, ge=1)  # then the delivery is dead-lettered
    webhook_max_age: float = Field(default=24 * 3600.0, gt=0)  # seconds; likewise
    webhook_backoff: float = Field(default=5.0, gt=0)  # first retry delay, doubling, jittered
    webhook_backoff_max: float = Field(default=3600.0, gt=0)  # the longest retry delay
    webhook_timeout: float = Field(default=10.0, gt=0)  # seconds a receiver has to answer
    webhook_poll: float = Field(default=1.0, gt=0)  # seconds between outbox passes
    webhook_claim: float = Field(default=60.0, gt=0)  # a crashed process's outbox claim
    # Calendar sync (docs/meetings.md, Calendar sync): CalDAV calendars kept in step.
    calendar_key: str | None = None  # Fernet key(s), comma-separated; None: from FOYER_SECRET
    calendar_interval: float = Field(default=60.0, gt=0)  # seconds between two rounds
    calendar_timeout: float = Field(default=15.0, gt=0)  # seconds a CalDAV request may take
    calendar_allow: str = ""  # hosts/CIDRs a private-address CalDAV server may use
    calendar_lease: float = Field(default=120.0, gt=0)  # seconds a process holds a calendar
    calendar_poll: float = Field(default=1.0, gt=0)  # seconds between looks for due calendars
    # Dedicated meetings (docs/meetings.md): "template" uses meeting_url; "webhook" POSTs,
    # signed, to meeting_webhook_url (private targets need webhook_allow).
    meeting_provider: Literal["template", "webhook"] = "template"
    meeting_webhook_url: str | None = None  # the integrator's endpoint that makes meetings
    meeting_webhook_secret: str | None = None  # whsec_<base64>: signs every request
    meeting_webhook_timeout: float = Field(default=10.0, gt=0)  # then 502 provider_failed
    metrics: bool = True  # record Prometheus metrics (GET /metrics); false: record nothing
    metrics_token: str | None = None  # set: GET /metrics needs Authorization: Bearer <token>
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    demo: bool = True  # create a demo host and print its console URL at start

    @property
    def origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def webhook_allow_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.webhook_allow.split(",") if a.strip())

    @property
    def calendar_allow_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.calendar_allow.split(",") if a.strip())

    @property
    def region_list(self) -> list[str]:
        return [r.strip().lower() for r in self.regions.split(",") if r.strip()]
