from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.backoff import backoff

FIRST, MAX = timedelta(seconds=5), timedelta(minutes=10)


def test_the_wait_doubles_from_the_first_step_up_to_the_maximum() -> None:
    waits = [backoff(attempts, FIRST, MAX) for attempts in range(1, 10)]

    assert waits[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert waits[-1] == MAX


@pytest.mark.parametrize("attempts", [40, 1_000, 10**9, 2**63])
def test_no_count_of_failures_overflows(attempts: int) -> None:
    # Regression: `first * 2 ** (attempts - 1)` before the cap raised OverflowError after a long outage.
    assert backoff(attempts, FIRST, MAX) == MAX


def test_a_count_below_one_waits_the_first_step() -> None:
    assert backoff(0, FIRST, MAX) == FIRST
