"""Log lines: ``LOG_FORMAT=json`` (one object a line, the default when not
on a terminal) or ``text``.

Every line has ``time``, ``level``, ``logger`` and ``message``, and, when the
line is about one workflow, its ``message_id``, the ``state`` it reached and
its ``trace_id`` (the W3C trace of its Kafka records, see
:mod:`streams.observability.tracing`). JSON is python-json-logger's formatter.

No secret reaches a log line: besides never logging them, the formatters
replace the value of every secret setting with ``***`` wherever it appears
(an exception message quoting a connection string, say), and the
``user:password@`` of any URL (:func:`redact_url`, which the call sites that
log a peer URL apply themselves).

A malformed HTTP request from outside is the sender's problem, not the
worker's: aiohttp's "Error handling request" for it is logged as one WARNING
line without a traceback (:class:`BadRequestNoise`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from streams.observability import tracing

REDACTED = "***"
CONTEXT = ("message_id", "state", "trace_id")


#: The userinfo of a URL: ``scheme://`` then everything up to the last ``@``
#: before the host ends (``/``, ``?``, ``#`` or whitespace).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]+@")


def redact_url(url: str) -> str:
    """``url`` (or a text holding URLs) with each ``user:password@`` replaced by ``***@``."""
    return _USERINFO.sub(rf"\1{REDACTED}@", url)


class BadRequestNoise(logging.Filter):
    """aiohttp logs a request it could not parse (bad header, bad length, ...)
    at ERROR with a traceback: attacker-controlled noise that would page someone.
    Such records become one WARNING line naming the problem; an error of a
    view (status 500) is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            said = " ".join(str(exc.message).split())[:200]  # aiohttp quotes the bad bytes with repr()
            # Formatted here, args dropped: the sender's bytes must not act as a %-format.
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {said}", ()
            if record.levelno > logging.WARNING:  # (aiohttp itself says a bad method at DEBUG)
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


class WorkContext(logging.Filter):
    """Adds the workflow in hand (message_id, state, trace_id) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.message_id = tracing.MESSAGE_ID.get()
        record.state = tracing.STATE.get()
        record.trace_id = tracing.TRACE_ID.get()
        return True


class _Redacting:
    secrets: tuple[str, ...] = ()

    def redact(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        return redact_url(line)


class JsonLines(_Redacting, JsonFormatter):
    def __init__(self) -> None:
        super().__init__("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         datefmt="%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class TextLines(_Redacting, logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT if getattr(record, name, None))
        return self.redact(f"{line} [{context}]" if context else line)


def resolve_format(log_format: str | None) -> str:
    """LOG_FORMAT, else json unless the output is a terminal."""
    if log_format:
        return log_format
    return "text" if sys.stdout.isatty() else "json"


def secret_values(settings: Any) -> tuple[str, ...]:
    """The values of every secret setting (SecretStr fields, and the database URL's password)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
    conninfo = getattr(settings, "conninfo", None)
    if isinstance(conninfo, str):
        from psycopg.conninfo import conninfo_to_dict

        try:
            password = conninfo_to_dict(conninfo).get("password")
        except Exception:  # noqa: BLE001 - a malformed URL is reported elsewhere
            password = None
        if password:
            found.append(str(password))
    # Longest first, so a secret that contains another is replaced whole.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def logging_config(log_format: str | None, level: str, secrets: Iterable[str] = (),
                   stream: str = "stdout") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` configuration for the whole process
    (the worker logs to stdout; the other commands to stderr, beside their output)."""
    formatter = JsonLines if resolve_format(log_format) == "json" else TextLines
    formatter.secrets = tuple(secrets)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": WorkContext}, "bad_requests": {"()": BadRequestNoise}},
        "formatters": {"lines": {"()": formatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "stream": f"ext://sys.{stream}",
                                 "formatter": "lines", "filters": ["bad_requests", "context"]}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def configure(log_format: str | None, level: str, secrets: Iterable[str] = (),
              stream: str = "stdout") -> dict[str, Any]:
    """Apply :func:`logging_config` now; returns it (the faust worker applies it again as it starts)."""
    import logging.config

    config = logging_config(log_format, level, secrets, stream)
    logging.config.dictConfig(config)
    return config
