"""Delivery reports of what the orchestrator texts, as pure decisions.

The SMS gateway posts ``sms:sent``, ``sms:delivered`` and ``sms:failed`` for
each SMS it sent, naming it by the ``message_id`` its ``/sms/send`` answered
(docs/contracts.md §3). Reports come in any order and more than once (the
gateway retries): the status a workflow shows only moves forward
(:func:`moves_forward`), and only a failure of the draft now on the phone is
a failed presentation (:func:`is_failed_presentation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from handlers.workflow import WorkflowState


class Delivery(StrEnum):
    """What the gateway said of one SMS (stored in ``workflow_state.sms_delivery_status``)."""

    SENT = "sent"  # the phone handed it to the network
    DELIVERED = "delivered"  # the network says it reached the recipient's phone
    FAILED = "failed"  # it will not arrive


#: The gateway's event type of each report, and the payload field with its time.
EVENTS: Mapping[str, tuple[Delivery, str]] = {
    "sms:sent": (Delivery.SENT, "sentAt"),
    "sms:delivered": (Delivery.DELIVERED, "deliveredAt"),
    "sms:failed": (Delivery.FAILED, "failedAt"),
}
#: How far along each status is: a report never moves a status back
#: (``sent`` after ``delivered``), and the two ends are final.
_RANK: Mapping[Delivery, int] = {Delivery.SENT: 1, Delivery.DELIVERED: 2, Delivery.FAILED: 2}
#: The longest ``reason`` kept of a failure report.
REASON_LIMIT = 500


@dataclass(frozen=True)
class DeliveryReport:
    """One report: the gateway's id of the SMS, what it says, and when (the gateway's time)."""

    sms_id: str
    status: Delivery
    at: datetime | None = None
    reason: str | None = None


def read_report(event: str, message_id: str | None, payload: Mapping[str, Any]) -> DeliveryReport | None:
    """The report an event carries, or None when it is not one (another event
    type, or no ``messageId`` to say which SMS). A time that does not parse is
    left out; the report still counts."""
    if event not in EVENTS or not message_id:
        return None
    status, time_field = EVENTS[event]
    at = None
    raw = payload.get(time_field)
    if isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            at = None
    reason = payload.get("reason") if status is Delivery.FAILED else None
    return DeliveryReport(sms_id=message_id[:255], status=status, at=at,
                          reason=str(reason)[:REASON_LIMIT] if reason is not None else None)


def moves_forward(shown: str | None, reported: Delivery) -> bool:
    """Whether ``reported`` replaces the status a workflow shows: only a later
    stage does (``delivered`` is never replaced by a late ``sent``, and a
    final status is never replaced at all)."""
    if shown is None:
        return True
    try:
        now = Delivery(shown)
    except ValueError:
        return True
    return _RANK[now] < _RANK[reported]


def furthest(reports: Iterable[DeliveryReport]) -> DeliveryReport | None:
    """Of reports for one SMS in the order they came, the one the workflow shows."""
    shown: DeliveryReport | None = None
    for report in reports:
        if moves_forward(shown.status if shown else None, report.status):
            shown = report
    return shown


def is_failed_presentation(report: DeliveryReport, state: WorkflowState, sms_message_id: str | None) -> bool:
    """A failure of the draft SMS the person is answering now: the draft never
    reached the phone, so it is presented again (docs/design.md, "Side effects
    happen once"). A failure of a draft already answered or timed out only records."""
    return (report.status is Delivery.FAILED and state is WorkflowState.AWAITING_USER
            and sms_message_id == report.sms_id)


def audit_reason(report: DeliveryReport) -> str:
    """The audit row's reason: "draft delivered to the phone at 10:02:07+01:00"."""
    at = f" at {report.at.isoformat(timespec='seconds')}" if report.at else ""
    if report.status is Delivery.SENT:
        return f"draft SMS sent by the gateway{at}"
    if report.status is Delivery.DELIVERED:
        return f"draft delivered to the phone{at}"
    return f"draft SMS failed{at}: {report.reason or 'no reason given'}"
