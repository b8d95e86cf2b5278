"""Property-based fuzzing shared by the test modules: how long runs are, and strategies for hostile documents.

Runs are short and repeatable in `make test`, long and fresh in `make fuzz`, which sets FUZZ_CASES (cases per
fuzzed target, instead of each test's own small count) and lets Hypothesis draw new randomness each run; what
such a run finds becomes a fix, and an example test beside the fuzz test that found it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bridge.errors import UserError

T = TypeVar("T")


def fuzz_settings(cases: int, *, long_cases: str = "FUZZ_CASES") -> Callable[[Any], Any]:
    """`cases` examples, the same every run; or, when the variable `long_cases` is set, that many fresh ones.

    The API fuzz reads FUZZ_API_CASES instead: each of its cases is a request through the whole bridge.
    """
    long = int(os.environ.get(long_cases, "0"))
    return settings(
        max_examples=long or cases,
        deadline=None,
        # The same cases every run in `make test`: it must not pass or fail by luck.
        derandomize=not long,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# Scalars of every YAML / JSON type, and text that looks like the values the bridge parses (durations, URLs, paths).
_TEXT = st.text(alphabet=st.characters(blacklist_characters="/\\~$", blacklist_categories=("Cs",)), max_size=20)
_LOOKALIKES = st.sampled_from(
    ["P99999999999D", "PT0S", "P3000000D", "PT5M", "end_of_day", "http://example.com", "https://u:p@h", "", "*", "0"]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT, _LOOKALIKES)
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT | _LOOKALIKES, inner, max_size=3),
    max_leaves=8,
)


def mutations(value: Any) -> st.SearchStrategy[Any]:
    """`value` (a parsed YAML document) with parts dropped, replaced by anything, or joined by unknown keys."""
    if isinstance(value, dict):
        kept = st.fixed_dictionaries({}, optional={key: mutations(item) for key, item in value.items()})
        extra = st.dictionaries(_TEXT | st.sampled_from([f"{key}_file" for key in value]), ANYTHING, max_size=2)
        return st.one_of(st.builds(lambda a, b: {**b, **a}, kept, extra), ANYTHING)
    if isinstance(value, list):
        return st.one_of(st.lists(mutations(value[0]) if value else ANYTHING, max_size=3), ANYTHING)
    return st.one_of(st.just(value), SCALARS)


# Text with YAML's syntax in it: anchors, aliases, merges, tags, flow collections, tabs.
YAML_TEXT = st.text(alphabet="ab:-&*<!{}[],'\"\t\n #|>?%@`P1TDM", max_size=200)


def loaded_or_refused(load: Callable[[], T]) -> T | None:
    """What `load()` returns, or None when it refused with a `UserError` of readable problems; anything else that
    it raises propagates and fails the test."""
    problems: tuple[str, ...] = ()
    loaded = None
    try:
        loaded = load()
    except UserError as exc:
        problems = exc.problems
    assert all(len(problem) < 1000 for problem in problems)
    return loaded
