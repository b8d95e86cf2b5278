"""Reading request bodies: the nesting depth found without decoding, checked against the decoded value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.web.bodies import MAX_DEPTH, too_deep
from tests.fuzzing import fuzz_settings

# Strings full of what the scanner must not count: brackets, quotes and escapes.
_TRICKY = st.text(alphabet='[]{}"\\ab', max_size=6)
_VALUES = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=60,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


def nested(levels: int, inner: Any = 1) -> Any:
    for level in range(levels):
        inner = [inner] if level % 2 else {"k": inner}
    return inner


@pytest.mark.fuzz
@given(value=_VALUES, wrap=st.integers(min_value=0, max_value=40))
@fuzz_settings(300)
def test_the_depth_found_without_decoding_is_the_decoded_depth(value: Any, wrap: int) -> None:
    value = nested(wrap, value)
    assert too_deep(json.dumps(value).encode()) == (depth(value) > MAX_DEPTH)


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1, 5000])
def test_a_body_is_too_deep_beyond_the_limit_and_only_then(levels: int) -> None:
    body = b'{"k": ' * (levels - 1) + b"[1]" + b"}" * (levels - 1)  # deeper than json.dumps itself can write
    assert too_deep(body) == (levels > MAX_DEPTH)
