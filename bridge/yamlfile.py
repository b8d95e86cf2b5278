"""YAML files an administrator edits (the config, template mappings): loading, schema checks, problems with lines.

Problems are reported as `FILE:LINE: dotted.path: message`, all of them at once, so one run of `check` shows an
administrator everything to fix. The composed node tree is kept next to the data because jsonschema only knows
where in the data an error is, and an admin needs to know where in the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

from bridge.errors import UserError

JsonPath = Sequence[str | int]

# Weeks, days and clock units only: a month or a year has no fixed length, so P1M would be a guess.
_DURATION = re.compile(
    r"P(?=\d|T\d)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)
_UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
# Longer than anything the bridge times (a state's end, a reconcile interval), short enough that adding it to any
# date the bridge handles stays a date (`P99999999999D` would overflow Python's datetime).
MAX_DURATION = timedelta(days=366)
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases may reuse what a file defines (`<<: *defaults`), but a few hundred bytes of nested aliases can stand for
# billions of values ("billion laughs"): checking, or printing, them exhausts memory. What aliases add beyond the
# written text is bounded before anything expands them (docs/configuration.md).
_ALIAS_GROWTH = 2
_ALIAS_ALLOWANCE = 10_000
# A problem quotes the value it is about; a long value is cut, so that a problem stays a line an admin can read.
_MAX_PROBLEM = 300


@dataclass(frozen=True)
class YamlDocument:
    """A loaded file: its data (as `yaml.safe_load` gives it) and the node tree that knows the lines."""

    path: Path
    data: Any
    root: yaml.Node | None
    # Problems found while reading (duplicate keys) as (line, problem): `schema_problems` reports them with its own.
    read_problems: tuple[tuple[int, str], ...] = ()

    def line(self, path: JsonPath) -> int:
        """The 1-based line of the deepest node along `path` that exists (a mapping entry: its key's line)."""
        return self._find(path)[1]

    def plain_scalar(self, path: JsonPath) -> str | None:
        """The text as written of the unquoted scalar at `path`, if that is what is there."""
        node, _, depth = self._find(path)
        if depth == len(path) and isinstance(node, yaml.ScalarNode) and node.style is None:
            return str(node.value)
        return None

    def _find(self, path: JsonPath) -> tuple[yaml.Node | None, int, int]:
        """The deepest node along `path` that exists, its line, and how many steps of `path` led there."""
        node, line = self.root, 1 if self.root is None else self.root.start_mark.line + 1
        depth = 0
        for step in path:
            if isinstance(node, yaml.MappingNode):
                # Last match: after construction a `<<` merge leaves the merged entries ahead of local overrides.
                found = next(((k, v) for k, v in reversed(node.value) if _key_text(k) == str(step)), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                break
            depth += 1
        return node, line, depth

    def problem(self, path: JsonPath, message: str) -> str:
        """`FILE:LINE: dotted.path: message`, the form every problem with this file takes."""
        where = f"{self.path.name}:{self.line(path)}"
        return f"{where}: {format_path(path)}: {message}" if path else f"{where}: {message}"


def format_path(path: JsonPath) -> str:
    """`sources.online.tenant_id`, `mailboxes[2].address`: how the docs and the problems name a setting."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse `path`; unreadable files and syntax errors raise `UserError`. Duplicate keys are kept in
    `read_problems`, so that `schema_problems` reports them with everything else that is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    loader = yaml.SafeLoader(raw)
    try:
        root = loader.get_single_node()
        _refuse_alias_bombs(path, root)
        # Checked before constructing: construction folds `<<` merges into the mapping, which would look like
        # duplicates of the keys that override them.
        duplicates = tuple(_duplicate_keys(path, root, (), set()))
        data = {} if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise UserError(f"{path} is not valid YAML", [_syntax_problem(path, exc)]) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML", [f"{path.name}: {exc}"]) from None
    finally:
        loader.dispose()
    return YamlDocument(path, data, root, duplicates)


def _syntax_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path.name}:{mark.line + 1}:{mark.column + 1}" if mark else path.name
    message = exc.problem or exc.context or "syntax error"
    if exc.context and exc.problem and exc.context_mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{where}: {message}"


def _duplicate_keys(
    path: Path, node: yaml.Node | None, at: tuple[str | int, ...], seen: set[int]
) -> Iterator[tuple[int, str]]:
    # PyYAML silently keeps the last of two equal keys, so an admin's second `busy:` would quietly win.
    if node is None or id(node) in seen:  # an alias refers back to a node already walked (or to itself)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                continue
            text, line = _key_text(key), key.start_mark.line + 1
            if text in first:
                where = f"{path.name}:{line}: {format_path((*at, text))}"
                yield line, f"{where}: duplicate key (first given at line {first[text]})"
            else:
                first[text] = line
            yield from _duplicate_keys(path, value, (*at, text), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(path, item, (*at, index), seen)


def _refuse_alias_bombs(path: Path, root: yaml.Node | None) -> None:
    """Raise `UserError` when aliases make the data much larger than the file, or make it contain itself."""
    written, expanded = _sizes(path, root)
    if expanded > _ALIAS_GROWTH * written + _ALIAS_ALLOWANCE:
        message = f"aliases (*name) expand it to more than {_ALIAS_GROWTH} times its size: write the values out"
        raise UserError(f"{path} is not accepted", [f"{path.name}: {message}"])


def _sizes(path: Path, root: yaml.Node | None) -> tuple[int, int]:
    """(size as written, size with every alias expanded): one per node plus the characters of each scalar.

    Each node is sized once and its expanded size remembered, so this costs the node count, not the expansion.
    """
    expanded: dict[int, int] = {}
    written = 0
    # Iterative: a deeply nested file must not exhaust Python's stack here either.
    stack: list[tuple[yaml.Node, bool]] = [] if root is None else [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in expanded and not children_done:
            continue
        children = _children(node)
        if not children_done:
            expanded[id(node)] = -1  # in progress: meeting it again below means the node contains itself
            written += 1 + (len(str(node.value)) if isinstance(node, yaml.ScalarNode) else 0)
            stack.append((node, True))
            for child in children:
                if expanded.get(id(child)) == -1:
                    where = f"{path.name}:{child.start_mark.line + 1}"
                    raise UserError(
                        f"{path} is not accepted", [f"{where}: this value contains an alias (*name) of itself"]
                    )
                stack.append((child, False))
            continue
        expanded[id(node)] = 1 + (len(str(node.value)) if isinstance(node, yaml.ScalarNode) else 0)
        expanded[id(node)] += sum(expanded[id(child)] for child in children)
    return written, (expanded[id(root)] if root is not None else 0)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else repr(node.value)


def load_schema(path: Path) -> Mapping[str, Any]:
    return _load_schema(path.resolve())


@cache
def _load_schema(path: Path) -> Mapping[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


def schema_problems(doc: YamlDocument, schema: Mapping[str, Any], *, hide: re.Pattern[str] | None = None) -> list[str]:
    """Every way `doc.data` breaks `schema`, as problems in file order.

    A key matching `hide` holds a secret: its value is left out of the message, since problems end up in logs.
    Schema nodes may carry `x-error` ("a valid UUID") to replace jsonschema's wording of a pattern or format
    failure, which names a regex or a format keyword an admin cannot act on.
    """
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    found = list(doc.read_problems)
    for error in validator.iter_errors(doc.data):
        for path, message in _explain(error, doc, secret=_is_secret(hide, error.absolute_path)):
            if _is_secret(hide, path):
                message = message.replace(repr(error.instance), "<hidden>")
            found.append((doc.line(path), doc.problem(path, _bounded(message))))
    # A value can break several branches of a oneOf the same way: one line each is enough.
    return list(dict.fromkeys(problem for _, problem in sorted(found)))


def _bounded(message: str) -> str:
    return message if len(message) <= _MAX_PROBLEM else f"{message[: _MAX_PROBLEM - 5]}[...]"


def _is_secret(hide: re.Pattern[str] | None, path: JsonPath) -> bool:
    return hide is not None and bool(path) and hide.fullmatch(str(path[-1])) is not None


def _explain(error: ValidationError, doc: YamlDocument, *, secret: bool) -> Iterable[tuple[JsonPath, str]]:
    path = list(error.absolute_path)
    subschema = error.schema if isinstance(error.schema, Mapping) else {}
    wanted = subschema.get("type")
    text_wanted = "string" in (wanted if isinstance(wanted, list) else [wanted])
    written = None if secret else doc.plain_scalar(path)
    read = json.dumps(error.instance) if isinstance(error.instance, int | float) else None
    if error.validator == "type" and text_wanted and read and written not in (None, read):
        # YAML 1.1 reads an unquoted 0123 as the octal number 83, 1_000 as 1000, 12:30 as 750 (base 60), no as false.
        kind = "boolean" if isinstance(error.instance, bool) else "number"
        yield path, f"{written} was read as the {kind} {read}; quote it to keep it as text: '{written}'"
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        # One problem per unknown key, at the key's own line: usually a typo the admin wants to find.
        known = sorted(subschema.get("properties", {}))
        hint = f" (expected one of: {', '.join(known)})" if known else ""
        for key in error.instance:
            if key not in known:
                yield [*path, key], f"unknown key{hint}"
        return
    if error.validator in ("pattern", "format") and "x-error" in subschema:
        yield path, f"{error.instance!r} is not {subschema['x-error']}"
        return
    yield path, error.message


def as_dict(value: Any) -> dict[Any, Any]:
    """`value` if it is a mapping, else empty: checks beyond the schema run on data the schema may reject."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class DurationTooLong(ValueError):
    """A duration well-formed but beyond `MAX_DURATION`: a problem of its own, which no schema pattern reports."""


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes, seconds (`PT30M`, `PT8H`, `P1D`); ValueError if not.

    Durations longer than `MAX_DURATION` raise `DurationTooLong`: added to a date they would overflow it.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30M, PT8H or P1D")
    parts = {unit: int(value) for unit, value in match.groupdict().items() if value}
    seconds = sum(count * _UNIT_SECONDS[unit] for unit, count in parts.items())
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(f"{text} is longer than {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The ISO 8601 spelling `parse_duration` reads back: P1D, PT1H30M."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
