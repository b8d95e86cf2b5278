"""How long to wait after the n-th failure in a row: doubling from a first step up to a maximum.

The exponent is capped before anything is multiplied, so no count of failures, however large, can overflow
`timedelta` (a bridge once failed every second with `OverflowError` from `first * 2 ** (attempts - 1)` after a
long outage).
"""

from __future__ import annotations

from datetime import timedelta

# 2**32 steps of even a microsecond are past any sensible maximum; the cap only keeps the arithmetic finite.
_MAX_EXPONENT = 32


def backoff(attempts: int, first: timedelta, maximum: timedelta) -> timedelta:
    """The wait after the `attempts`-th failure in a row (1 → `first`), never more than `maximum`."""
    exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
    return min(first * (1 << exponent), maximum)
