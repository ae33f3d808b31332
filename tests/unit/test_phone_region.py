"""PHONE_REGION: where a number written without a country code is read (docs/contracts.md §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.phones import normalise_phone
from streams.settings import ConfigError, Settings, load_settings

BASE = {"email_address": "me@gmail.com", "email_password": "app-password",
        "database_url": "postgresql://u:p@127.0.0.1:5432/db"}


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("PHONE_REGION", "YOUR_PHONE_NUMBER"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("phone", "region"), [("+15551234567", "US"), ("+447700900123", "GB"),
                                               ("+4915112345678", "DE"), ("+1234567890", "US")])
def test_the_default_is_the_region_of_your_phone_number(phone: str, region: str) -> None:
    assert load_settings(Settings, your_phone_number=phone, **BASE).phone_region == region


def test_a_region_that_is_set_wins_and_reads_national_numbers() -> None:
    s = load_settings(Settings, your_phone_number="+447700900123", phone_region=" gb ", **BASE)
    assert s.phone_region == "GB"
    assert normalise_phone("07700 900123", s.phone_region) == normalise_phone(s.your_phone_number)


def test_an_unknown_region_is_named() -> None:
    with pytest.raises(ConfigError, match="^PHONE_REGION: unknown region 'XX'"):
        load_settings(Settings, your_phone_number="+15551234567", phone_region="XX", **BASE)
