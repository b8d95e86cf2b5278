"""Editing a mapping as the admin page does: form fields written into the text with its comments kept, every
problem of a candidate with its line, and the diff between two versions."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.errors import UserError
from bridge.mapping_edit import (
    MappingFields,
    Problem,
    TemplateFields,
    check,
    parse_states,
    read_fields,
    text_diff,
    with_fields,
)
from bridge.templates import default_mapping_path, load_mapping_text

SHIPPED = default_mapping_path().read_text(encoding="utf-8")


def edited(**changes: object) -> str:
    return with_fields(SHIPPED, dataclasses.replace(read_fields(SHIPPED), **changes))  # type: ignore[arg-type]


def test_the_form_reads_every_field_of_the_shipped_mapping() -> None:
    fields = read_fields(SHIPPED)
    assert (fields.ignore_prefix, fields.days_ahead) == ("*", "90")
    assert fields.show == {"busy": "meeting", "oof": "absence", "tentative": "tentative", "workingElsewhere": "remote"}
    assert fields.templates[0] == TemplateFields("absence", "oof", all_day=True, state_until="end_of_day")
    assert fields.precedence == ("oof", "busy", "workingElsewhere", "tentative")


def test_saving_the_form_unchanged_leaves_the_text_byte_for_byte() -> None:
    assert with_fields(SHIPPED, read_fields(SHIPPED)) == SHIPPED


def test_a_form_edit_changes_only_the_lines_edited_and_keeps_every_comment() -> None:
    fields = read_fields(SHIPPED)
    after = edited(
        days_ahead="30",
        show={**fields.show, "tentative": ""},
        templates=(*fields.templates, TemplateFields("training", "busy", category="Training")),
        precedence=("busy", "oof", "workingElsewhere", "tentative"),
    )

    changed = [line for line in text_diff(SHIPPED, after).splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [
        "-days_ahead: 90",
        "+days_ahead: 30",
        "-  tentative: tentative",
        "+  training: {show_as: busy, category: Training}",
        "-precedence: [oof, busy, workingElsewhere, tentative]",
        "+precedence: [busy, oof, workingElsewhere, tentative]",
    ]
    comments = [line for line in SHIPPED.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in after.splitlines() if line.lstrip().startswith("#")] == comments
    mapping = load_mapping_text(after)
    assert (mapping.days_ahead, mapping.templates["training"].category) == (30, "Training")


def test_a_template_left_out_of_the_form_is_removed_and_an_emptied_field_falls_back_to_its_default() -> None:
    fields = read_fields(SHIPPED)
    meeting = dataclasses.replace(fields.templates[1], state_until="")
    after = edited(templates=(fields.templates[0], meeting, *fields.templates[2:3]), show={"busy": "meeting"})

    mapping = load_mapping_text(after)
    assert sorted(mapping.templates) == ["absence", "meeting", "remote"]
    assert "  meeting: {show_as: busy}\n" in after


def test_a_days_ahead_that_is_not_a_number_is_written_as_typed_and_reported_at_its_line() -> None:
    checked = check(edited(days_ahead="ninety"), "mapping.yaml")
    assert checked.problems == (Problem(11, "days_ahead: 'ninety' is not of type 'integer'"),)


def test_a_negative_days_ahead_is_written_as_a_number_and_reported_as_one() -> None:
    checked = check(edited(days_ahead="-5"), "mapping.yaml")
    assert checked.problems == (Problem(11, "days_ahead: -5 is less than the minimum of 1"),)


def test_check_reports_every_problem_with_its_line() -> None:
    text = SHIPPED.replace("busy: meeting", "busy: meting").replace("[oof, busy,", "[oof, oof,")

    checked = check(text, "mapping.yaml")

    assert not checked.valid
    assert checked.problems == (
        Problem(16, "show.busy: template 'meting' is not defined under templates"),
        Problem(39, "precedence[1]: 'oof' is listed twice"),
        Problem(39, "precedence: shown states missing: busy"),
    )


def test_a_syntax_error_is_reported_where_the_parser_stopped_and_where_the_construct_began() -> None:
    checked = check(SHIPPED.replace("days_ahead: 90", "days_ahead: [90"), "mapping.yaml")
    [problem] = checked.problems
    assert problem.line == 15  # the next key, where an unclosed list cannot go on
    assert "while parsing a flow sequence at line 11" in problem.text


def test_a_valid_text_has_no_problems() -> None:
    assert check(SHIPPED, "mapping.yaml").valid


def test_form_fields_cannot_be_written_into_a_text_that_is_not_yaml() -> None:
    with pytest.raises(UserError, match="not valid YAML"):
        with_fields("show: [", read_fields(SHIPPED))


def test_a_new_template_in_a_block_style_file_is_written_in_block_style() -> None:
    text = "show:\n  busy: meeting\ntemplates:\n  meeting:\n    show_as: busy  # the usual\n"
    fields = MappingFields("*", "90", {"busy": "meeting"}, (TemplateFields("meeting", "busy"),) * 1, ("busy",))
    fields = dataclasses.replace(fields, templates=(*fields.templates, TemplateFields("away", "oof", all_day=True)))

    after = with_fields(text, fields)

    assert "    show_as: busy  # the usual\n" in after
    assert "  away:\n    show_as: oof\n    all_day: true\n" in after


def test_precedence_is_typed_with_commas_or_spaces() -> None:
    assert parse_states("oof, busy  workingElsewhere,tentative") == ("oof", "busy", "workingElsewhere", "tentative")


def test_the_diff_of_equal_texts_is_empty() -> None:
    assert text_diff(SHIPPED, SHIPPED) == ""
