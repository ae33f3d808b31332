"""People's mail passwords at rest: Fernet tokens under ``PEOPLE_KEYS``.

``PEOPLE_KEYS`` holds one or more Fernet keys, comma separated, newest first:
the first encrypts, every one decrypts (``cryptography``'s MultiFernet). To
rotate, put a new key first, run ``orchestrator people rotate-keys`` (every
stored password is encrypted again under the first key), then drop the old
key. A password is never stored, shown or logged in clear.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeysError(ValueError):
    """PEOPLE_KEYS is missing, malformed, or holds no key a stored password was made with."""


class PeopleKeys:
    """The workers' keys: encrypt with the first, decrypt with any."""

    def __init__(self, text: str) -> None:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise KeysError("give at least one key (orchestrator people new-key makes one)")
        try:
            self._keys = MultiFernet([Fernet(p.encode()) for p in parts])
        except (ValueError, TypeError):
            raise KeysError("each key must be a Fernet key (32 url-safe base64-encoded bytes;"
                            " orchestrator people new-key makes one)") from None

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, clear: str) -> str:
        return self._keys.encrypt(clear.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._keys.decrypt(token.encode()).decode()
        except InvalidToken:
            raise KeysError("a stored password was made with a key PEOPLE_KEYS no longer holds") from None

    def rotate(self, token: str) -> str:
        """``token`` encrypted again under the first key."""
        try:
            return self._keys.rotate(token.encode()).decode()
        except InvalidToken:
            raise KeysError("a stored password was made with a key PEOPLE_KEYS no longer holds") from None
