"""The state machine's table, as pure data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.workflow import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransitionError,
    WorkflowState,
    check_transition,
    email_status_for,
    is_allowed,
)

S = WorkflowState
states = st.sampled_from(list(WorkflowState))


def reachable_from(start: WorkflowState) -> set[WorkflowState]:
    seen, frontier = {start}, [start]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_every_state_is_reachable_from_pending() -> None:
    assert reachable_from(S.PENDING) == set(WorkflowState)


def test_sent_and_ignored_are_final() -> None:
    assert TRANSITIONS[S.REPLY_SENT] == frozenset()
    assert TRANSITIONS[S.USER_IGNORED] == frozenset()


def test_every_live_state_can_fail_and_reach_a_decision() -> None:
    for state in set(WorkflowState) - TERMINAL_STATES:
        assert is_allowed(state, S.FAILED), state
        assert reachable_from(state) & {S.REPLY_SENT, S.USER_IGNORED}, state


def test_the_seed_flow_is_allowed() -> None:
    path = [S.PENDING, S.AI_GENERATING, S.AI_GENERATED, S.SMS_SENDING, S.AWAITING_USER,
            S.USER_EDIT_REQUESTED, S.AI_GENERATING, S.AI_GENERATED, S.SMS_SENDING,
            S.AWAITING_USER, S.USER_APPROVED, S.REPLY_SENT]
    for a, b in zip(path, path[1:]):
        check_transition(a, b)


def test_email_status_follows_decisions() -> None:
    assert email_status_for(S.PENDING) == "orchestrating"
    assert email_status_for(S.REPLY_SENT) == "sent"
    assert email_status_for(S.USER_IGNORED) == "ignored"
    assert email_status_for(S.FAILED) == "failed"
    assert email_status_for(S.TIMEOUT) == "timeout"
    assert email_status_for(S.AWAITING_USER) is None


#: Every allowed move, written out by hand (not read from ``TRANSITIONS``), so
#: that a move added to or dropped from the table fails here until it is meant.
ALLOWED_MOVES = """
    pending             -> ai_generating filtered failed answered_elsewhere superseded unrouted
    ai_generating       -> ai_generated failed answered_elsewhere superseded
    ai_generated        -> sms_sending failed user_approved user_edit_requested user_ignored answered_elsewhere superseded
    sms_sending         -> awaiting_user ai_generated failed
    awaiting_user       -> user_approved user_edit_requested user_ignored timeout failed ai_generated answered_elsewhere superseded
    user_edit_requested -> ai_generating failed answered_elsewhere superseded
    user_approved       -> reply_sent failed awaiting_user answered_elsewhere
    failed              -> pending ai_generated user_approved
    timeout             -> ai_generated
"""


def moves(text: str) -> set[tuple[WorkflowState, WorkflowState]]:
    found: set[tuple[WorkflowState, WorkflowState]] = set()
    for line in text.strip().splitlines():
        source, targets = line.split("->")
        found.update((S(source.strip()), S(target)) for target in targets.split())
    return found


ALLOWED = moves(ALLOWED_MOVES)


def test_the_moves_written_out_are_read_as_meant() -> None:
    assert len(ALLOWED) == 40
    assert (S.PENDING, S.AI_GENERATING) in ALLOWED and (S.PENDING, S.REPLY_SENT) not in ALLOWED


@pytest.mark.parametrize("a", list(WorkflowState))
@pytest.mark.parametrize("b", list(WorkflowState))
def test_check_transition_allows_exactly_the_moves_written_out(a: WorkflowState, b: WorkflowState) -> None:
    assert is_allowed(a, b) is ((a, b) in ALLOWED)
    if (a, b) in ALLOWED:
        check_transition(a, b)
    else:
        with pytest.raises(IllegalTransitionError, match=f"{a.value} -> {b.value}"):
            check_transition(a, b)


def test_the_named_state_sets_partition_the_states() -> None:
    from handlers.workflow import AWAITING_STATES, COMPLETED_STATES, IN_PROGRESS_STATES, OPEN_STATES

    groups = [COMPLETED_STATES, frozenset({S.FAILED}), AWAITING_STATES, IN_PROGRESS_STATES]
    assert sum(len(g) for g in groups) == len(S) and frozenset().union(*groups) == frozenset(S)
    assert OPEN_STATES == AWAITING_STATES | IN_PROGRESS_STATES
    assert TERMINAL_STATES == COMPLETED_STATES | {S.FAILED}


@given(states, st.sampled_from(["draft", "notify", "command", "send", None, "bogus"]), st.booleans())
def test_a_retry_restarts_somewhere_the_table_allows(state: WorkflowState, stage: str | None,
                                                     has_draft: bool) -> None:
    from handlers.workflow import plan_retry

    restart = plan_retry(state, stage, has_draft)
    if state not in (S.FAILED, S.TIMEOUT):
        assert restart is None
        return
    assert restart is not None and is_allowed(state, restart.state)
    if restart.state is S.AI_GENERATED:
        assert has_draft or state is S.TIMEOUT


def test_a_retry_restarts_at_the_stage_that_failed() -> None:
    from handlers.workflow import Stage, plan_retry

    restart = plan_retry(S.FAILED, "notify", True)
    assert restart is not None and (restart.state, restart.stage) == (S.AI_GENERATED, Stage.NOTIFY)
    assert (r := plan_retry(S.FAILED, "send", True)) is not None and r.stage is Stage.SEND
    assert (r := plan_retry(S.FAILED, "notify", False)) is not None and r.state is S.PENDING
    assert (r := plan_retry(S.FAILED, None, True)) is not None and r.stage is Stage.DRAFT
    assert (r := plan_retry(S.TIMEOUT, None, True)) is not None and r.state is S.AI_GENERATED
