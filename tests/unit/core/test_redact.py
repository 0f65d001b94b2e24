"""Redaction: URL passwords and secret-named keys are masked, identifiers and hashes are kept."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.redact import MASK, is_secret_key, redact, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://app:s3cret@db:5432/conveyor",
            "postgresql+psycopg://app:***@db:5432/conveyor",
        ),
        ("https://user:p%40ss@host/path?q=1", "https://user:***@host/path?q=1"),
        (
            "s3://bucket/key?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&v=2",
            "s3://bucket/key?X-Amz-Signature=***&X-Amz-Credential=***&v=2",
        ),
        (
            "https://api.example/x?access_token=t0k&page=2",
            "https://api.example/x?access_token=***&page=2",
        ),
        # Nothing secret: returned unchanged, character for character.
        ("postgresql://app@db/conveyor", "postgresql://app@db/conveyor"),
        ("https://host/p?a=1&b=%2F", "https://host/p?a=1&b=%2F"),
        ("s3://bucket/data/churn.parquet", "s3://bucket/data/churn.parquet"),
        ("not a url", "not a url"),
        ("http://[::1", "http://[::1"),  # does not parse: left alone
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_urls_inside_text_are_redacted() -> None:
    text = "cannot reach postgresql://app:hunter2@db/x (timeout); retry 'https://u:pw@h/'"
    out = redact_text(text)
    assert "hunter2" not in out
    assert ":pw@" not in out
    assert out == "cannot reach postgresql://app:***@db/x (timeout); retry 'https://u:***@h/'"
    assert redact_text("plain words") == "plain words"


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "auth_token",
        "password",
        "db_password",
        "api_key",
        "apiKey",
        "secret",
        "aws_secret_access_key",
        "private_key",
        "Authorization",
        "credentials",
        "cookie",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "token_id",
        "token_hash",
        "expires_at",
        "max_tokens",
        "role",
        "reason",
        "keys",
        "cache_key",
        "source_uri",
        "secretary_name",
    ],
)
def test_keys_that_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_masks_nested_values_and_keeps_the_rest() -> None:
    payload: dict[str, Any] = {
        "token_id": "ab12cd34",
        "token": "cv_live_abcdef",
        "expires_at": "2026-12-01T00:00:00+00:00",
        "store": "postgresql://app:s3cret@db/conveyor",
        "settings": {"password": 1234, "host": "db", "empty_token": ""},
        "hooks": [{"url": "https://u:p@hook/", "secret": None}, 3, True],
        "rows": 1000,
    }
    out = redact(payload)
    assert out == {
        "token_id": "ab12cd34",
        "token": MASK,
        "expires_at": "2026-12-01T00:00:00+00:00",
        "store": "postgresql://app:***@db/conveyor",
        "settings": {"password": MASK, "host": "db", "empty_token": ""},
        "hooks": [{"url": "https://u:***@hook/", "secret": None}, 3, True],
        "rows": 1000,
    }
    # The input is not modified.
    assert payload["token"] == "cv_live_abcdef"
    assert payload["settings"]["password"] == 1234


def test_clean_values_are_returned_as_they_are() -> None:
    payload = {"from_stage": "staging", "to_stage": "production", "nested": {"a": [1, "x"]}}
    assert redact(payload) is payload
    items = ("a", "s3://bucket/k")
    assert redact(items) is items
    assert redact(("https://u:p@h/",)) == ("https://u:***@h/",)


def test_audit_payloads_are_redacted_before_hashing(sqlite_store: Any) -> None:
    from conveyor.store.metadata import verify_chain

    with sqlite_store.write("ann") as tx:
        event = tx.audit(
            "dataset.registered",
            "dataset:x",
            {"source_uri": "https://ann:hunter2@data.example/churn.csv", "api_key": "k-123"},
        )
    assert "hunter2" not in event.payload
    assert "k-123" not in event.payload
    assert (
        event.payload == '{"api_key":"***","source_uri":"https://ann:***@data.example/churn.csv"}'
    )
    with sqlite_store.read() as conn:
        assert verify_chain(conn).ok
        stored = conn.exec_driver_sql("SELECT payload FROM audit_event").scalar()
    assert stored == event.payload


def test_log_lines_lose_passwords_and_api_tokens() -> None:
    import logging

    from conveyor.core.redact import RedactingFilter

    token = "cvr_" + "Ab3_" * 10
    record = logging.LogRecord(
        "conveyor.test",
        logging.WARNING,
        __file__,
        1,
        "could not open %s with %s",
        ("postgresql+psycopg://app:s3cret@db:5432/conveyor", token),
        None,
    )
    assert RedactingFilter().filter(record)
    line = record.getMessage()
    assert "s3cret" not in line
    assert token not in line
    assert "postgresql+psycopg://app:***@db:5432/conveyor" in line
    assert "cvr_***" in line
