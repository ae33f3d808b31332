"""Log lines: ``LOG_FORMAT=json`` (one object a line, the default when not
on a terminal) or ``text``.

Every line has ``time``, ``level``, ``logger`` and ``message``, and, when the
line is about one workflow, its ``message_id``, the ``state`` it reached and
its ``trace_id`` (the W3C trace of its Kafka records, see
:mod:`streams.observability.tracing`). JSON is python-json-logger's formatter.

No secret reaches a log line: besides never logging them, the formatters
replace the value of every secret setting with ``***`` wherever it appears
(an exception message quoting a connection string, say).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from streams.observability import tracing

REDACTED = "***"
CONTEXT = ("message_id", "state", "trace_id")


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
        return line


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
        "filters": {"context": {"()": WorkContext}},
        "formatters": {"lines": {"()": formatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "stream": f"ext://sys.{stream}",
                                 "formatter": "lines", "filters": ["context"]}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def configure(log_format: str | None, level: str, secrets: Iterable[str] = (),
              stream: str = "stdout") -> dict[str, Any]:
    """Apply :func:`logging_config` now; returns it (the faust worker applies it again as it starts)."""
    import logging.config

    config = logging_config(log_format, level, secrets, stream)
    logging.config.dictConfig(config)
    return config
