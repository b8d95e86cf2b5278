from __future__ import annotations

import logging

import pytest

from bridge.outages import Outages


def fail(outages: Outages, key: str, text: str) -> None:
    try:
        raise RuntimeError(text)
    except RuntimeError as exc:
        outages.unexpected(key, f"{key}: {exc}", exc)


def test_an_unexpected_error_is_one_line_with_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    outages = Outages(logging.getLogger("test.outages"))
    with caplog.at_level(logging.INFO, "test.outages"):
        for _ in range(50):
            fail(outages, "alice@example.com", "boom")
        fail(outages, "alice@example.com", "another boom")
        outages.recovered("alice@example.com", "alice@example.com: works again")

    lines = [record.getMessage() for record in caplog.records]
    traced = [record for record in caplog.records if record.exc_info]
    assert lines == ["alice@example.com: boom", "alice@example.com: another boom", "alice@example.com: works again"]
    assert len(traced) == 2  # one per distinct error


def test_the_same_error_of_another_mailbox_is_logged_without_a_second_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = Outages(logging.getLogger("test.outages"))
    with caplog.at_level(logging.INFO, "test.outages"):
        fail(outages, "alice@example.com", "boom")
        fail(outages, "bob@example.com", "boom")

    assert [record.getMessage() for record in caplog.records] == ["alice@example.com: boom", "bob@example.com: boom"]
    assert [bool(record.exc_info) for record in caplog.records] == [True, False]
