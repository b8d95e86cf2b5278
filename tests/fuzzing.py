"""How long the property-based fuzz runs are: short and repeatable in `make test`, long and fresh in `make fuzz`.

`make fuzz` sets FUZZ_CASES (cases per fuzzed target, instead of each test's own small count) and lets Hypothesis
draw new randomness each run; what such a run finds becomes a fix, and an example test, here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings

LONG_CASES = int(os.environ.get("FUZZ_CASES", "0"))


def fuzz_settings(cases: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=LONG_CASES or cases,
        deadline=None,
        # The same cases every run in `make test`: it must not pass or fail by luck.
        derandomize=not LONG_CASES,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
