"""What the worker and the operator's commands write of what came from
outside: peer URLs without their credentials, a malformed request as one
WARNING line, and records on the terminal without control characters
(issue 17, item 16)."""

from __future__ import annotations

import io
import logging

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from streams.cli.terminal import for_terminal
from streams.observability.logs import BadRequestNoise, TextLines, redact_url


def test_a_url_is_logged_without_its_userinfo() -> None:
    assert redact_url("http://user:pa@ss@ai.example:8002/generate-reply") == "http://***@ai.example:8002/generate-reply"
    assert redact_url("POST https://u@h/x and postgresql://o:pw@db/x") == "POST https://***@h/x and postgresql://***@db/x"
    for kept in ("http://ai.example:8002/x?to=a@b", "mail from a@b.example", "http://h#x@y"):
        assert redact_url(kept) == kept


def _line(name: str, level: int, exc: BaseException | None) -> tuple[logging.LogRecord, str]:
    record = logging.LogRecord(name, level, __file__, 1, "Error handling request from %s", ("127.0.0.1",),
                               (type(exc), exc, None) if exc else None)
    kept = BadRequestNoise().filter(record)
    assert kept
    return record, TextLines().format(record)


def test_a_malformed_request_is_one_warning_line() -> None:
    for exc in (BadHttpMessage("Invalid header token:\n\n  b'Bad Header'"), LineTooLong("line", "8190"),
                BadHttpMessage("b'%s%d%(x)s'")):  # the sender's bytes are no format string
        record, line = _line("aiohttp.server", logging.ERROR, exc)
        assert record.levelname == "WARNING" and record.exc_info is None
        assert "\n" not in line and line.endswith(f"from 127.0.0.1: {type(exc).__name__}: "
                                                   f"{' '.join(exc.message.split())}")


def test_a_bad_request_said_at_debug_stays_at_debug() -> None:
    record, line = _line("aiohttp.server", logging.DEBUG, BadHttpMessage("x"))
    assert record.levelname == "DEBUG" and "\n" not in line


def test_an_error_of_a_view_stays_an_error() -> None:
    record, line = _line("aiohttp.server", logging.ERROR, RuntimeError("boom"))
    assert record.levelname == "ERROR" and record.exc_info is not None and "RuntimeError: boom" in line
    other, _ = _line("streams.web.server", logging.ERROR, BadHttpMessage("x"))
    assert other.levelname == "ERROR"


def test_the_terminal_sees_no_control_characters_but_every_letter() -> None:
    assert for_terminal("\x1b[31mred\x1b[0m\ttab\r\n\x00\x7f") == "\\x1b[31mred\\x1b[0m\\x09tab\\x0d\\x0a\\x00\\x7f"
    assert for_terminal("a\u202eb\u2028c\u200bd") == "a\\u202eb\\u2028c\\u200bd"
    kept = "Grüße, José: 日本語 кириллица 😀 <a@b>"
    assert for_terminal(kept) == kept
    out = io.StringIO()
    print(for_terminal("\x1b]0;pwned\x07"), file=out)
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
