"""The error taxonomy every adapter speaks.

- :class:`TransientError`: worth retrying with backoff (timeouts, refused
  connections, 5xx, the gateway's ``success: false``, SMTP 4xx).
- :class:`PermanentError`: retrying cannot help (the generator's 404, SMTP 5xx,
  invalid data); the workflow fails at once.
- :class:`OutcomeUnknownError`: the side effect may or may not have happened
  (the SMTP connection died after the message was handed over); never retried
  blindly, a person decides.
A lost compare-and-set is not an error at all: the repository returns False.
"""

from __future__ import annotations


class PeerError(Exception):
    """Base of adapter failures; ``peer`` names who failed."""

    def __init__(self, peer: str, message: str) -> None:
        super().__init__(f"{peer}: {message}")
        self.peer = peer


class TransientError(PeerError):
    """A failure worth retrying; ``retry_after`` (seconds) when the peer said
    how long to wait (an HTTP ``Retry-After``)."""

    def __init__(self, peer: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(peer, message)
        self.retry_after = retry_after


class PermanentError(PeerError):
    """A failure retrying cannot fix."""


class LoginRefusedError(PermanentError):
    """The mail server refused the login (a wrong or changed password): no
    retry fixes it, a person fixing the password does."""


class OutcomeUnknownError(PeerError):
    """The side effect may have happened; do not repeat it automatically."""
