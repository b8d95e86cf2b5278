"""Editing a template mapping file as an administrator does on the admin page (docs/admin.md).

Its fields in a form, or its text; either way the file keeps its comments and layout: a form edit is written into
the text by a ruamel.yaml round trip, which changes only the values edited. A candidate is checked by the same
`load_mapping` the bridge uses, so the page reports exactly what `templates validate` would, each problem with
its line.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from bridge.errors import UserError
from bridge.templates import SHOWABLE, load_mapping_text

STATES = tuple(state.value for state in SHOWABLE)
_OPTIONAL = ("state_until", "category", "subject")  # template keys the form leaves out when empty


@dataclass(frozen=True, slots=True)
class TemplateFields:
    """One template as the form shows it; "" stands for a key the file leaves out (its default applies)."""

    name: str
    show_as: str
    all_day: bool = False
    state_until: str = ""
    category: str = ""
    subject: str = ""


@dataclass(frozen=True, slots=True)
class MappingFields:
    """What the form edits. Values are kept as typed (`days_ahead` too): the check reports a wrong one at its line."""

    ignore_prefix: str
    days_ahead: str
    show: dict[str, str]  # Exchange state → template; "" or absent: not shown
    templates: tuple[TemplateFields, ...]
    precedence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a candidate mapping: its line (None when it is about the whole file) and what is wrong."""

    line: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Checked:
    """A candidate mapping's text and its problems (none: it can be applied)."""

    text: str
    problems: tuple[Problem, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems


def check(text: str, name: str) -> Checked:
    """Every problem of `text` as the mapping file `name`, as `presence-bridge templates validate` reports them."""
    try:
        load_mapping_text(text, name)
    except UserError as exc:
        return Checked(text, tuple(_problem(line, name) for line in exc.problems or (exc.summary,)))
    return Checked(text)


def _problem(text: str, name: str) -> Problem:
    found = re.match(re.escape(name) + r":(\d+)(?::\d+)?: ", text)
    if found is None:
        return Problem(None, text.removeprefix(f"{name}: "))
    return Problem(int(found[1]), text[found.end() :])


def read_fields(text: str) -> MappingFields:
    """The form's fields of a valid mapping's text."""
    data = _yaml().load(text) or {}
    show = data.get("show") or {}
    templates = data.get("templates") or {}
    return MappingFields(
        ignore_prefix=str(data.get("ignore_prefix", "*")),
        days_ahead=str(data.get("days_ahead", 90)),
        show={state: str(show[state]) for state in STATES if state in show},
        templates=tuple(
            TemplateFields(
                name=str(name),
                show_as=str(spec.get("show_as", "")),
                all_day=spec.get("all_day") is True,
                **{key: str(spec[key]) for key in _OPTIONAL if key in spec},
            )
            for name, spec in templates.items()
        ),
        precedence=tuple(str(state) for state in data.get("precedence", STATES)),
    )


def with_fields(text: str, fields: MappingFields) -> str:
    """`text` with the form's fields written in; comments, order and flow style of what stays are kept.

    Raises UserError when `text` is not YAML a form can be applied to (edit the text itself then).
    """
    yaml = _yaml()
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise UserError("the mapping's text is not valid YAML: fix it in the text editor", [str(exc)]) from None
    if not isinstance(data, CommentedMap):
        raise UserError("the mapping's text is not a YAML mapping: fix it in the text editor")
    _put(data, "ignore_prefix", fields.ignore_prefix)
    _put(data, "days_ahead", _number_or_text(fields.days_ahead))
    show = _section(data, "show")
    for state in STATES:
        template = fields.show.get(state, "").strip()
        if template:
            _put(show, state, template)
        else:
            show.pop(state, None)
    _write_templates(_section(data, "templates"), fields.templates)
    precedence = data.get("precedence")
    if isinstance(precedence, CommentedSeq):
        precedence[:] = list(fields.precedence)  # in place: the list keeps its flow style and comments
    else:
        data["precedence"] = _flow_seq(fields.precedence)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _number_or_text(typed: str) -> int | str:
    # A number is written as one, so that the schema can say "less than the minimum"; text stays text for the
    # schema to call "not of type integer", at its line.
    return int(typed) if re.fullmatch(r"\s*-?\d{1,9}\s*", typed) else typed


def _write_templates(section: CommentedMap, templates: Iterable[TemplateFields]) -> None:
    wanted = {template.name.strip(): template for template in templates if template.name.strip()}
    flow = any(isinstance(spec, CommentedMap) and spec.fa.flow_style() for spec in section.values())
    for name in [name for name in section if name not in wanted]:
        del section[name]
    for name, template in wanted.items():
        spec = section.get(name)
        if not isinstance(spec, CommentedMap):
            spec = CommentedMap()
            if flow:
                spec.fa.set_flow_style()
            section[name] = spec
        _put(spec, "show_as", template.show_as)
        if template.all_day or "all_day" in spec:
            _put(spec, "all_day", template.all_day)
        for key in _OPTIONAL:
            value = getattr(template, key).strip()
            if value:
                _put(spec, key, value)
            else:
                spec.pop(key, None)


def _put(data: CommentedMap, key: str, value: Any) -> None:
    # Assigning an equal value would still drop a quoted scalar's quotes: leave unchanged values alone.
    if key not in data or data[key] != value:
        data[key] = value


def _section(data: CommentedMap, key: str) -> CommentedMap:
    section = data.get(key)
    if not isinstance(section, CommentedMap):
        section = data[key] = CommentedMap()
    return section


def _flow_seq(items: Iterable[str]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, key order, flow style and quotes are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a line an administrator wrote
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def text_diff(before: str, after: str, *, before_name: str = "before", after_name: str = "after") -> str:
    """A unified diff of two versions of a mapping file ("" when equal)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), before_name, after_name
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def parse_states(text: str) -> tuple[str, ...]:
    """A precedence typed as `oof, busy, workingElsewhere` (commas or spaces): the states in that order."""
    return tuple(part for part in re.split(r"[\s,]+", text) if part)
