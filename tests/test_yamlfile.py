"""YAML files admins edit: every problem named by file, line and dotted key."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import UserError
from bridge.yamlfile import format_duration, format_path, load_yaml, parse_duration, schema_problems
from tests.conftest import BILLION_LAUGHS

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sources"],
    "properties": {
        "sources": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["tenant_id"],
                "properties": {
                    "tenant_id": {"type": "string", "format": "uuid", "x-error": "a valid UUID"},
                    "client_secret": {"type": "string"},
                },
            },
        },
        "show": {"type": "object", "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path, schema: dict[str, Any] = SCHEMA, hide: re.Pattern[str] | None = None) -> list[str]:
    return schema_problems(load_yaml(path), schema, hide=hide)


def test_data_is_what_safe_load_gives(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nb: [x, 'y']\nc: {d: true}\n")
    assert load_yaml(path).data == {"a": 1, "b": ["x", "y"], "c": {"d": True}}


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path, "# only a comment\n")).data == {}


def test_python_tags_are_refused_as_safe_load_would(tmp_path: Path) -> None:
    path = write(tmp_path, "a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError, match=r"config\.yaml:1"):
        load_yaml(path)


def test_line_of_a_nested_key_is_the_key_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  online:\n    tenant_id: abc\n")
    assert load_yaml(path).line(["sources", "online", "tenant_id"]) == 3


def test_line_of_a_list_item_is_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items:\n  - 1\n  - 2\n  - 3\n")
    assert load_yaml(path).line(["items", 2]) == 4


def test_line_of_a_missing_key_is_its_deepest_existing_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "x: 1\nsources:\n  online:\n    kind: graph\n")
    assert load_yaml(path).line(["sources", "online", "tenant_id"]) == 3


def test_paths_are_dotted_with_list_indexes() -> None:
    assert format_path(["mailboxes", 2, "address"]) == "mailboxes[2].address"
    assert format_path(["sources", "online", "tenant_id"]) == "sources.online.tenant_id"


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "show:\n  busy: meeting\n  oof: [absence\n")
    with pytest.raises(UserError) as caught:
        load_yaml(path)
    assert caught.value.summary == f"{path} is not valid YAML"
    assert re.match(r"config\.yaml:4:1: expected ',' or ']'", caught.value.problems[0])


def test_a_duplicate_key_is_a_problem_naming_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "show:\n  busy: meeting\n  oof: absence\n  busy: remote\n")
    assert schema_problems(load_yaml(path), {}) == ["config.yaml:4: show.busy: duplicate key (first given at line 2)"]


def test_duplicates_inside_list_items_are_found_too(tmp_path: Path) -> None:
    path = write(tmp_path, "mailboxes:\n  - {address: a@b.c}\n  - address: a@b.c\n    address: d@e.f\n")
    [problem] = schema_problems(load_yaml(path), {})
    assert problem.startswith("config.yaml:4: mailboxes[1].address: duplicate key")


def test_a_duplicate_key_is_reported_with_the_other_problems_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "show:\n  busy: 42\n  busy: remote\ndays: x\n")
    schema = {"properties": {"show": {"additionalProperties": {"type": "string"}}, "days": {"type": "integer"}}}
    assert schema_problems(load_yaml(path), schema) == [
        "config.yaml:3: show.busy: duplicate key (first given at line 2)",
        "config.yaml:4: days: 'x' is not of type 'integer'",
    ]


def test_an_unquoted_number_where_text_belongs_says_how_yaml_read_it(tmp_path: Path) -> None:
    path = write(tmp_path, "ids: [0123, 1_000, 12:30, no, 83, '0123']\n")
    schema = {"properties": {"ids": {"items": {"type": "string"}}}}
    assert schema_problems(load_yaml(path), schema) == [
        "config.yaml:1: ids[0]: 0123 was read as the number 83; quote it to keep it as text: '0123'",
        "config.yaml:1: ids[1]: 1_000 was read as the number 1000; quote it to keep it as text: '1_000'",
        "config.yaml:1: ids[2]: 12:30 was read as the number 750; quote it to keep it as text: '12:30'",
        "config.yaml:1: ids[3]: no was read as the boolean false; quote it to keep it as text: 'no'",
        "config.yaml:1: ids[4]: 83 is not of type 'string'",
    ]


def test_a_secret_read_as_a_number_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "password: 0123\n")
    schema = {"properties": {"password": {"type": "string"}}}
    assert schema_problems(load_yaml(path), schema, hide=re.compile("password")) == [
        "config.yaml:1: password: <hidden> is not of type 'string'"
    ]


def test_merge_keys_overridden_locally_are_not_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &base {a: 1, b: 2}\nderived:\n  <<: *base\n  b: 3\n")
    assert load_yaml(path).data["derived"] == {"a": 1, "b": 3}


def test_an_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")


def test_every_schema_error_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        show:
          busy: 42
        sources:
          online:
            tenant_id: abc
        items: [1, two]
        """,
    )
    assert problems(path) == [
        "config.yaml:2: show.busy: 42 is not of type 'string'",
        "config.yaml:5: sources.online.tenant_id: 'abc' is not a valid UUID",
        "config.yaml:6: items[1]: 'two' is not of type 'integer'",
    ]


def test_a_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  online:\n    client_secret: x\n")
    assert problems(path) == ["config.yaml:2: sources.online: 'tenant_id' is a required property"]


def test_a_missing_top_level_key_points_at_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, "show: {}\n")
    assert problems(path) == ["config.yaml:1: 'sources' is a required property"]


def test_an_unknown_key_is_named_at_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  online:\n    tenant_id: 00000000-0000-0000-0000-000000000000\n    tenant: x\n")
    assert problems(path) == [
        "config.yaml:4: sources.online.tenant: unknown key (expected one of: client_secret, tenant_id)"
    ]


def test_a_secret_value_is_left_out_of_the_message(tmp_path: Path) -> None:
    path = write(
        tmp_path, "sources:\n  online:\n    tenant_id: 00000000-0000-0000-0000-000000000000\n    client_secret: 12345\n"
    )
    found = problems(path, hide=re.compile(".*secret"))
    assert found == ["config.yaml:4: sources.online.client_secret: <hidden> is not of type 'string'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT30M", timedelta(minutes=30)),
        ("PT8H", timedelta(hours=8)),
        ("P1D", timedelta(days=1)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT2H30M15S", timedelta(days=1, hours=2, minutes=30, seconds=15)),
    ],
)
def test_iso_durations_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "P1M", "P1Y", "1H", "PT1.5H", "pt1h", "P1H", "PT1D"])
def test_durations_without_a_fixed_length_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["PT30M", "PT8H", "P1D", "P2DT1H", "PT1H30M", "PT0S", "PT45S"])
def test_durations_are_written_back_as_read(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# --- hostile files: bounded before anything expands them -------------------------------------------------------


def test_nested_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    path = write(tmp_path, BILLION_LAUGHS)
    with pytest.raises(UserError) as caught:
        load_yaml(path)
    assert "aliases (*name) expand it to more than 2 times its size" in caught.value.render()
    assert len(caught.value.render()) < 500


def test_a_value_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a: &x\n  b: *x\n")
    with pytest.raises(UserError, match=r"config\.yaml:1: this value contains an alias \(\*name\) of itself"):
        load_yaml(path)


def test_aliases_that_reuse_a_few_values_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: &defaults {tenant_id: x, client_secret: y}
        sources:
          one: {<<: *defaults}
          two: *defaults
        """,
    )
    assert load_yaml(path).data["sources"]["two"] == {"tenant_id": "x", "client_secret": "y"}


def test_a_problem_quoting_a_long_value_is_cut(tmp_path: Path) -> None:
    path = write(tmp_path, f"sources: {{}}\nitems: [1, '{'x' * 100_000}']\n")
    [problem] = problems(path)
    assert problem.startswith("config.yaml:2: items[1]: 'xxx")
    assert problem.endswith("[...]")
    assert len(problem) < 400


def test_a_duration_longer_than_a_year_is_refused_not_overflowed() -> None:
    with pytest.raises(ValueError, match="P99999999999D is longer than P366D"):
        parse_duration("P99999999999D")
    assert parse_duration("P366D") == timedelta(days=366)
