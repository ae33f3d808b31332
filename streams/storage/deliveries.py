"""Delivery reports: what the gateway says of the SMS it sent (table
``sms_delivery_report``), and the draft status a workflow shows from them
(``workflow_state.sms_delivery_*``). The decisions are
:mod:`handlers.deliveries`'; docs/design.md, "Side effects happen once".

A report may come before the worker that texted the draft has recorded the
gateway's id (the gateway posts ``sms:sent`` as soon as it has answered). So
every report is kept, and the notify stage adopts those already kept when it
records the id (:meth:`Deliveries.adopt_deliveries`). Both take an advisory
lock on the SMS's id first, so one of them always sees the other's row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from handlers.deliveries import Delivery, DeliveryReport, audit_reason, moves_forward
from streams.storage.base import TransactionBase, one
from streams.storage.records import DeliveryRecorded, Workflow

#: The advisory lock class of one SMS's delivery reports (the other key is hashtext(its id)).
DELIVERY_LOCK = 0x0E4A15


class Deliveries(TransactionBase):
    """Delivery reports, kept once each, and their effect on a workflow."""

    async def record_delivery(self, report: DeliveryReport) -> DeliveryRecorded:
        """Keep ``report`` once (a redelivery is not ``fresh``) and, when it is
        about the draft SMS a workflow has recorded, move that workflow's
        delivery status forward with an audit row (never back: a late ``sent``
        leaves ``delivered``)."""
        await self._lock_reports(report.sms_id)
        row = await one(self.conn,
                        "INSERT INTO sms_delivery_report (sms_message_id, status, reported_at, reason, recorded_at)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING sms_message_id",
                        (report.sms_id, report.status.value, report.at, report.reason, self.clock.now()))
        fresh = row is not None
        found = await one(self.conn,
                          "SELECT * FROM workflow_state WHERE sms_message_id = %s"
                          " ORDER BY sms_sent_at DESC NULLS LAST, id DESC LIMIT 1 FOR UPDATE", (report.sms_id,))
        if found is None:
            return DeliveryRecorded(fresh=fresh)
        wf = Workflow.from_row(found)
        await self.conn.execute("UPDATE sms_delivery_report SET message_id = %s WHERE sms_message_id = %s",
                                (wf.message_id, report.sms_id))
        if fresh:
            wf = await self._show(wf, report)
        return await self._recorded(fresh, wf, report if report.status is Delivery.FAILED else None)

    async def adopt_deliveries(self, message_id: str, sms_id: str | None) -> DeliveryRecorded:
        """``message_id``'s draft SMS is now ``sms_id`` (None: not known): show
        what was reported of it so far, and nothing of an earlier one."""
        await self.conn.execute(
            "UPDATE workflow_state SET sms_delivery_status = NULL, sms_delivery_at = NULL,"
            " sms_delivery_error = NULL WHERE message_id = %s", (message_id,))
        wf = await self.get(message_id, for_update=True)
        if sms_id is None or wf is None:
            return DeliveryRecorded(fresh=False, workflow=wf)
        await self._lock_reports(sms_id)
        cur = await self.conn.execute(
            "UPDATE sms_delivery_report SET message_id = %s WHERE sms_message_id = %s"
            " RETURNING status, reported_at, reason, recorded_at", (message_id, sms_id))
        rows = sorted(await cur.fetchall(), key=lambda r: r["recorded_at"])
        failed = None
        for r in rows:
            report = DeliveryReport(sms_id, Delivery(r["status"]), r["reported_at"], r["reason"])
            wf = await self._show(wf, report)
            failed = report if report.status is Delivery.FAILED else failed
        return await self._recorded(bool(rows), wf, failed)

    async def _lock_reports(self, sms_id: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (DELIVERY_LOCK, sms_id))

    async def _show(self, wf: Workflow, report: DeliveryReport) -> Workflow:
        """``wf`` showing ``report`` if it moves the status forward, audited."""
        if not moves_forward(wf.sms_delivery_status, report.status):
            return wf
        now = self.clock.now()
        row = await one(self.conn,
                        "UPDATE workflow_state SET sms_delivery_status = %s, sms_delivery_at = %s,"
                        " sms_delivery_error = %s WHERE message_id = %s RETURNING *",
                        (report.status.value, report.at, report.reason, wf.message_id))
        state = wf.current_state.value
        await self._audit(wf.message_id, state, state, audit_reason(report), report.reason, now)
        return Workflow.from_row(row) if row else wf

    async def _recorded(self, fresh: bool, wf: Workflow, failed: DeliveryReport | None) -> DeliveryRecorded:
        row = await one(self.conn,
                        "SELECT count(*) AS n, min(recorded_at) AS first FROM sms_delivery_report"
                        " WHERE message_id = %s AND status = %s", (wf.message_id, Delivery.FAILED.value))
        stats: dict[str, Any] = row or {"n": 0, "first": None}
        first: datetime | None = stats["first"]
        return DeliveryRecorded(fresh=fresh, workflow=wf, failed=failed, failures=int(stats["n"]),
                                first_failure_at=first)
