"""Sessions that say who signed in (issue 19, items 4 and 6): the admin, with
the API token, or one person, with a code texted to their phone. The person
is signed with the session, so a cookie cannot be changed to another person's
(or to the admin's), and the CSRF token is bound to the whole session."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from streams.web.guard import ADMIN, Guard, Viewer
from streams.web.signin import code_hash, code_text


def _request(cookie: str) -> web.Request:
    return make_mocked_request("GET", "/", headers=CIMultiDict({"Cookie": f"orchestrator_session={cookie}"}))


def test_a_session_names_the_admin_or_one_person() -> None:
    guard = Guard.for_token("token-1")
    admin, bob = guard.new_session(), guard.new_session(person=7)
    assert guard.session_of(admin) == ADMIN and guard.session_of(admin).admin  # type: ignore[union-attr]
    assert guard.session_of(bob) == Viewer(7) and not Viewer(7).admin
    assert guard.session_of(guard.new_session(person=0)) == Viewer(0)  # the default person is a person too
    assert guard.valid_session(bob) and guard.signed_in(_request(bob))
    assert guard.admin_session(_request(admin)) and not guard.admin_session(_request(bob))
    assert not Guard.for_token("token-2").valid_session(bob)  # a new token ends every session


@pytest.mark.parametrize("change", [
    lambda s: s.replace(".p7.", ".p8."),  # another person
    lambda s: s.replace(".p7.", ".p07."),
    lambda s: s.replace(".p7.", "."),  # the admin
    lambda s: s.replace(".p7.", ".p-1."),
    lambda s: s.replace(".p7.", ".7."),
    lambda s: s.replace(".p7.", ".p7.p7."),
    lambda s: str(int(s.split(".")[0]) + 1) + s[s.index("."):],  # a longer life
    lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # another MAC
    lambda s: s + ".",
    lambda s: "9" * 5000 + s[s.index("."):],
])
def test_a_tampered_session_is_refused(change: object) -> None:
    guard = Guard.for_token("token-1")
    session = guard.new_session(person=7)
    forged = change(session)  # type: ignore[operator]
    assert forged != session and guard.session_of(forged) is None
    assert guard.csrf(_request(forged)) == guard.csrf(make_mocked_request("GET", "/"))  # the anonymous token


def test_an_expired_person_session_is_refused() -> None:
    guard = Guard.for_token("token-1")
    expires, who, _ = guard.new_session(person=3).split(".")
    past = int(time.time()) - 1
    assert guard.session_of(f"{past}.{who}.{guard._mac(f'session:{past}:person:3')}") is None


def test_csrf_is_bound_to_the_session_and_its_person() -> None:
    guard = Guard.for_token("token-1")
    ann, bob, admin = (_request(guard.new_session(person=p)) for p in (1, 2, None))
    assert len({guard.csrf(r) for r in (ann, bob, admin)}) == 3
    assert guard.check_csrf(ann, guard.csrf(ann)) and not guard.check_csrf(ann, guard.csrf(bob))


def test_a_viewer_sees_only_its_own() -> None:
    assert ADMIN.sees(1) and ADMIN.sees(None) and ADMIN.sees(0)
    assert Viewer(1).sees(1) and not Viewer(1).sees(2) and not Viewer(1).sees(None)
    assert Viewer(0).sees(0) and not Viewer(0).sees(1)


def test_a_code_is_kept_as_an_hmac_of_its_person() -> None:
    key = b"k" * 32
    kept = code_hash(key, 3, "123456")
    assert len(kept) == 64 and "123456" not in kept
    assert kept != code_hash(key, 4, "123456") and kept != code_hash(b"x" * 32, 3, "123456")
    assert code_text("123456", 600) == ("Your dashboard sign-in code is 123456 (valid 10 minutes). "
                                        "If you did not ask for it, ignore this SMS.")
