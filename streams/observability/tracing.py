"""Trace context: one W3C trace per workflow, and what log lines say about
the work in hand.

A workflow's trace starts when its email is picked up (``workflow_state.trace_id``
is set as the row is made); an SMS's starts at the webhook. Every record the
worker writes carries a ``traceparent`` header in that trace (the outbox
relay adds it, see :mod:`streams.pipeline.relay`), so one trace id ties together a
workflow's records on every topic and its log lines. Formatting and parsing
``traceparent`` is opentelemetry-api's W3C propagator; an OpenTelemetry SDK
is not needed.

The context variables below are set where work starts (a consumed record, a
draft taken from the database) and read by the JSON log formatter.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()

#: The trace of the work in hand (32 hex digits), if any.
TRACE_ID: ContextVar[str | None] = ContextVar("trace_id", default=None)
#: The email the work in hand is about, and the state it reached.
MESSAGE_ID: ContextVar[str | None] = ContextVar("message_id", default=None)
STATE: ContextVar[str | None] = ContextVar("state", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C ``traceparent`` for a span (16 hex digits) in ``trace_id``, sampled."""
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(NonRecordingSpan(context)))
    return carrier["traceparent"]


def trace_id_of(headers: Mapping[str, bytes | str] | None) -> str | None:
    """The trace id in a record's ``traceparent`` header, or None (absent or malformed)."""
    value = (headers or {}).get("traceparent")
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    span = get_current_span(_PROPAGATOR.extract({"traceparent": text})).get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None


@contextmanager
def working_on(message_id: str | None = None, trace_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines name ``message_id`` and ``trace_id``."""
    tokens = (MESSAGE_ID.set(message_id), TRACE_ID.set(trace_id), STATE.set(None))
    try:
        yield
    finally:
        STATE.reset(tokens[2])
        TRACE_ID.reset(tokens[1])
        MESSAGE_ID.reset(tokens[0])
