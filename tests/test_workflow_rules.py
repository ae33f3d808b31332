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


@given(states, states)
def test_check_transition_agrees_with_the_table(a: WorkflowState, b: WorkflowState) -> None:
    if b in TRANSITIONS[a]:
        check_transition(a, b)
    else:
        with pytest.raises(IllegalTransitionError, match=f"{a.value} -> {b.value}"):
            check_transition(a, b)
