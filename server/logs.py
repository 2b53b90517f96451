"""Logs: human-readable by default, one JSON object per line with
``FOYER_LOG_FORMAT=json`` (Foyer's loggers and uvicorn's alike).

A record carries the ids of the socket it is about where they are known: the
endpoints ``bind`` them (connection id, host id, guest id) in a context
variable that the socket's task and the tasks it starts inherit. Secrets never
reach a log: Foyer logs no token, key or resume secret, and the ``Redact``
filter drops websockets' debug lines that print whole frames (a ``hello``
carries a token, a ``waiting`` a resume secret).
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# The ids of the socket a record is about (conn, host, guest); set by the endpoints.
LOG_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "foyer_log_context", default=MappingProxyType({})
)

TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"
# LogRecord attributes that are not ``extra=`` fields.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_DROPPED_EXTRAS = frozenset({"color_message"})  # uvicorn's coloured copy of the message


def bind(**ids: str) -> None:
    """Add ids to this task's log context (and that of tasks it starts later)."""
    LOG_CONTEXT.set({**LOG_CONTEXT.get(), **ids})


class Redact(logging.Filter):
    """Drop the lines that could hold a secret: websockets logs every frame at
    debug level (``> %s`` / ``< %s`` with the frame)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg in ("> %s", "< %s") and _is_frame(record.args))


def _is_frame(args: Any) -> bool:
    return isinstance(args, tuple) and len(args) == 1 and type(args[0]).__name__ == "Frame"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
    ``msg``, ``pid``, the socket's ids, ``extra=`` fields, and ``exc`` (the
    traceback) when there is one. uvicorn's access lines get their parts as
    fields too (``client``, ``method``, ``path``, ``status``)."""

    def __init__(self, *args: Any, use_colors: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # (uvicorn may pass use_colors: no colours here)

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process or os.getpid(),
        }
        out.update(LOG_CONTEXT.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _DROPPED_EXTRAS and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            if len(record.args) == 5:
                client, method, path, _version, status = record.args
                out.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Foyer's loggers (``foyer.*``): one handler on stderr, text or JSON."""
    logger = logging.getLogger("foyer")
    logger.setLevel(level.upper())
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(Redact())
    logger.addHandler(handler)


def uvicorn_config(fmt: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: its own in text, JSON lines otherwise; both
    with the ``Redact`` filter (uvicorn applies it in every worker)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "server.logs.Redact"}}
    if fmt == "json":
        json_formatter = {"()": "server.logs.JsonFormatter"}
        config["formatters"] = {"default": json_formatter, "access": dict(json_formatter)}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
