"""Senders who come first: the patterns (the syntax of SKIP_SENDERS), the
order drafts are taken in, and the marks on the phone (pure, and the stages
on the in-memory repository)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from handlers.senders import (
    VIP_PATTERN_CHARS,
    VIP_PRIORITY,
    parse_patterns,
    read_vip_pattern,
    vip_pattern,
)
from handlers.sms_text import ListedDraft, render_list_sms
from handlers.workflow import WorkflowState
from streams.storage.base import READY_FIRST, ready_key
from streams.storage.records import Workflow
from tests.unit.test_stages import World

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_vip_patterns_match_as_skip_senders_do() -> None:
    patterns = parse_patterns(" *@Boss.example , ceo@* ,partner.example,, ")
    assert patterns == ["*@boss.example", "ceo@*", "partner.example"]
    assert vip_pattern("The Boss <Boss@BOSS.example>", patterns) == "*@boss.example"
    assert vip_pattern("ceo@anywhere.example", patterns) == "ceo@*"
    assert vip_pattern("ann@partner.example", patterns) == "partner.example"
    assert vip_pattern("ann@mail.partner.example", patterns) == "partner.example"  # a subdomain too
    assert vip_pattern("ann@notpartner.example", patterns) is None  # not a suffix of the name
    assert vip_pattern("ann@other.example", patterns) is None
    assert vip_pattern("Undisclosed recipients:;", ["*"]) is None  # no address: no VIP
    assert vip_pattern("ann@other.example", []) is None


@pytest.mark.parametrize("typed, kept", [
    ("  *@Boss.Example ", "*@boss.example"),
    ("The Boss <Boss@Boss.example>", "boss@boss.example"),
    ("partner.example", "partner.example"),
])
def test_a_pattern_typed_on_the_dashboard_is_kept_trimmed_in_lower_case(typed: str, kept: str) -> None:
    assert read_vip_pattern(typed) == kept


@pytest.mark.parametrize("typed", ["", "   ", "a@b.example, c@d.example", "a b@c.example", "a@b@c",
                                   "x" * (VIP_PATTERN_CHARS + 1), "a\x00@b.example"])
def test_what_is_not_one_pattern_is_refused_with_a_reason(typed: str) -> None:
    with pytest.raises(ValueError):
        read_vip_pattern(typed)


def _wf(mid: str, minutes: int, priority: int = 0) -> Workflow:
    return Workflow(message_id=mid, current_state=WorkflowState.AI_GENERATING, previous_state=None,
                    email_subject=None, email_from=None, email_to=None, email_body_preview=None,
                    email_received_at=T0 + timedelta(minutes=minutes), ai_reply_text=None,
                    ai_reply_generated_at=None, sms_message_id=None, sms_sent_at=None, sms_phone_number=None,
                    user_command=None, user_edit_instructions=None, user_responded_at=None, edit_iteration=0,
                    created_at=T0 + timedelta(minutes=minutes), priority=priority)


def test_vip_first_then_oldest_email_first_in_sql_and_in_python() -> None:
    assert READY_FIRST.startswith(" ORDER BY priority DESC, email_received_at NULLS LAST")
    rows = [_wf("old", 1), _wf("vip-new", 9, VIP_PRIORITY), _wf("mid", 5), _wf("vip-old", 7, VIP_PRIORITY)]
    assert [wf.message_id for wf in sorted(rows, key=ready_key)] == ["vip-old", "vip-new", "old", "mid"]


def test_the_list_sms_marks_a_vip_sender_and_says_what_the_mark_means() -> None:
    plain = ListedDraft("K7", "John Smith", "Meeting?", timedelta(hours=2), "on phone")
    vip = ListedDraft("M3", "The Boss", "Budget", timedelta(minutes=5), "waiting", vip=True)
    text = render_list_sms([plain, vip])
    assert text.splitlines()[:3] == ["2 open: (*VIP)", "K7 John Smith: Meeting? (2h)",
                                     "*M3 The Boss: Budget (5m, waiting)"]
    assert "*" not in render_list_sms([plain])  # no mark, no legend


async def test_a_vip_draft_is_texted_before_an_older_one_and_begins_vip() -> None:
    world = World()
    for mid, minutes in (("old", 1), ("boss", 9)):
        await world.repo.start(mid, from_address=f"{mid} <{mid}@example.com>",
                               received_at=T0 + timedelta(minutes=minutes))
    boss = world.repo.data.workflows["boss"]
    world.repo.data.workflows["boss"] = dataclasses.replace(boss, priority=VIP_PRIORITY)
    for mid in ("old", "boss"):
        await world.draft(mid)
    await world.stages.notify()
    assert world.state("boss") is WorkflowState.AWAITING_USER
    assert world.state("old") is not WorkflowState.AWAITING_USER
    [first] = world.sms.sent
    assert first[1].startswith("VIP boss:"), first
