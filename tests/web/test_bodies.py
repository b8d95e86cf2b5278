"""Reading request bodies: the nesting depth found without decoding, checked against the decoded value; decoding
through the declarations, every wrong field named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.web.bodies import MAX_DEPTH, decode, too_deep
from bridge.web.schemas import Mail, NewAppointment, Roster
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


def test_a_body_that_fits_its_declaration_decodes_with_defaults() -> None:
    invalid: list[dict[str, str]] = []
    body = {"to": ["adele@contoso.com"], "subject": "Rota", "body": "see the plan"}

    mail = decode(body, Mail, invalid)

    assert invalid == []
    assert mail == Mail(to=["adele@contoso.com"], subject="Rota", body="see the plan", content_type="text")


def test_every_wrong_field_is_named_not_only_the_first() -> None:
    invalid: list[dict[str, str]] = []
    body = {"to": "adele@contoso.com", "subject": "x" * 256, "content_type": "pdf", "colour": "red"}

    assert decode(body, Mail, invalid) is None
    assert [item["name"] for item in invalid] == ["colour", "to", "subject", "body", "content_type"]
    assert invalid[0]["reason"].startswith("unknown field; expected one of ['bcc', 'body', 'cc'")
    assert invalid[2]["reason"] == "Expected `str` of length <= 255"
    assert invalid[3]["reason"] == "required"


def test_a_wrong_value_inside_a_field_is_named_by_its_path() -> None:
    invalid: list[dict[str, str]] = []
    recurrence = {"pattern": "weekly", "days_of_week": ["monday", 7], "until": "2030-01-01"}
    body = {"template": "meeting", "start": "2030-01-01", "end": "2030-01-02", "recurrence": recurrence}

    assert decode(body, NewAppointment, invalid) is None
    assert invalid == [{"name": "recurrence.days_of_week", "reason": "Expected `str`, got `int` (at [1])"}]


def test_a_wrong_row_of_a_list_of_objects_is_named_by_its_index() -> None:
    invalid: list[dict[str, str]] = []
    body = {"mailboxes": [{"address": "adele@contoso.com"}, {"address": "megan@contoso.com", "team": "ops"}]}

    assert decode(body, Roster, invalid) is None
    assert invalid == [{"name": "mailboxes[1]", "reason": "Object contains unknown field `team`"}]
