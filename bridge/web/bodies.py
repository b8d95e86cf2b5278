"""Reading request bodies for the REST API: size-limited, JSON objects only, and the 4xx answers when not."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from bridge.web.problems import PROBLEM_TYPE, problem, problem_text

# How long a body may take to arrive (`listen.body_timeout`; the app sets it, tests' bare apps take the default).
BODY_TIMEOUT = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 30.0
# Each wrong field as RFC 9457's `invalid_params` entries: {"name": ..., "reason": ...}.
Invalid = list[dict[str, str]]
# No body the bridge reads nests deeper than a few levels (a Graph notification: 5). Decoders recurse once per
# level, and 1,000 levels exhausted Python's stack (a 500): bodies deeper than this are refused before decoding.
MAX_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_OPEN = ord("[")
_RUN = re.compile(rb"\[+|\]+")
# Where in a field's value msgspec found the error: `$.pattern`, `$[2]`.
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")

S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes (read no further than that).

    A body that does not arrive within the listener's `body_timeout` is answered 408: a client trickling a
    byte at a time would otherwise hold its connection, and a handler, for as long as it likes.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(request.config_dict.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)):
            while size <= limit and (chunk := await request.content.read(limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError:
        detail = "the body did not arrive in time"
        text = problem_text(408, "Request Timeout", detail)
        raise web.HTTPRequestTimeout(text=text, content_type=PROBLEM_TYPE) from None
    return None if size > limit else b"".join(chunks)


async def read_json(request: web.Request, limit: int, *, optional: bool = False) -> dict[str, Any] | web.Response:
    """The body as a JSON object, or the problem answer: 413 when too large, 400 when not a JSON object."""
    raw = await read_limited(request, limit)
    if raw is None:
        return too_large(limit)
    if optional and not raw.strip():
        return {}
    if too_deep(raw):
        return invalid_request([{"name": "body", "reason": f"nests deeper than {MAX_DEPTH} levels"}])
    try:
        parsed = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return invalid_request([{"name": "body", "reason": "is not JSON"}])
    if not isinstance(parsed, dict):
        return invalid_request([{"name": "body", "reason": "must be a JSON object"}])
    return parsed


def too_deep(raw: bytes) -> bool:
    """Whether JSON text `raw` nests arrays and objects deeper than `MAX_DEPTH`, found without decoding it.

    Strings and scalars are dropped. Each pass then deletes the innermost bracket pairs (one level everywhere, at
    C speed); passes stop when they no longer shrink the text by a tenth, and the rest is summed run by run, which
    is cheap exactly then: runs are long. A MiB of brackets costs tens of milliseconds, whatever its shape.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        # It nests no deeper than it has opening brackets (those in strings too): this settles most bodies at C
        # speed, a twentieth of the passes' cost for a command's body.
        return False
    # One kind of bracket (a mismatched pair is the decoder's to report), so that a pass removes one level only.
    brackets = _JSON_STRING.sub(b"", raw).translate(_ONE_KIND, delete=_NOT_BRACKETS)
    passes = 0
    while passes < MAX_DEPTH:
        shrunk = brackets.replace(b"[]", b"")
        if len(shrunk) > 0.9 * len(brackets):
            break
        brackets, passes = shrunk, passes + 1
    depth = 0
    for run in _RUN.finditer(brackets):
        start, end = run.span()
        depth += end - start if brackets[start] == _OPEN else start - end
        if depth > MAX_DEPTH - passes:
            return True
    return False


def invalid_request(invalid: Invalid) -> web.Response:
    names = ", ".join(dict.fromkeys(item["name"] for item in invalid))
    return problem(400, "Bad Request", f"invalid: {names}", invalid_params=invalid)


def too_large(limit: int) -> web.Response:
    return problem(413, "Content Too Large", f"the body is larger than {limit} bytes")


def _unknown_fields(body: dict[str, Any], allowed: set[str], invalid: Invalid) -> None:
    for name in sorted(body.keys() - allowed):
        invalid.append({"name": name, "reason": f"unknown field; expected one of {sorted(allowed)}"})


def decode(body: dict[str, Any], kind: type[S], invalid: Invalid) -> S | None:
    """`body` as its declaration in bridge/web/schemas.py, or None with each wrong field added to `invalid`.

    A body that fits is decoded at once (msgspec keeps each struct's decoder: a few µs); one that does not is
    decoded again field by field, so that the answer names every unknown, missing or wrongly typed field, not only
    the first one msgspec meets; a wrong value inside a field is named by its path (`recurrence.pattern`; see
    `_located`).
    """
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError:
        pass  # the field by field pass below says what is wrong, every field of it
    fields = msgspec.structs.fields(kind)
    before = len(invalid)
    _unknown_fields(body, {field.encode_name for field in fields}, invalid)
    values: dict[str, Any] = {}
    for field in fields:
        name = field.encode_name
        if name not in body:
            if field.required:
                invalid.append({"name": name, "reason": "required"})
            continue
        try:
            values[field.name] = msgspec.convert(body[name], field.type)
        except msgspec.ValidationError as exc:
            message = str(exc)
            at = _AT.search(message)
            if at is not None:
                name, message = _located(name, field.type, at["path"], message[: at.start()])
            invalid.append({"name": name, "reason": message})
    return kind(**values) if len(invalid) == before else None


def supplied(value: T | msgspec.UnsetType | None) -> T | None:
    """A decoded field's value; None when it was left out or given as null (both: the default)."""
    return None if isinstance(value, msgspec.UnsetType) else value


def _located(name: str, declared: Any, path: str, message: str) -> tuple[str, str]:
    """The name and reason of a wrong value `path` deep in field `name`.

    The name goes down to the list that holds it (`recurrence.days_of_week`), and the item is said in the reason;
    but an item of a list of objects is a record of its own (a roster's row) and is named with its index
    (`mailboxes[4]`).
    """
    info = msgspec.inspect.type_info(declared)
    if isinstance(info, msgspec.inspect.UnionType):
        info = next((kind for kind in info.types if isinstance(kind, msgspec.inspect.ListType)), info)
    rows = isinstance(info, msgspec.inspect.ListType) and isinstance(info.item_type, msgspec.inspect.StructType)
    if rows and path.startswith("["):
        index, _, rest = path.partition("]")
        return f"{name}{index}]", message + (f" (at {rest.lstrip('.')})" if rest else "")
    path, bracket, item = path.partition("[")
    return name + path, message + (f" (at [{item})" if bracket else "")


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date-time (UTC when it has no offset) or a date (its 00:00 UTC); None if not one."""
    parsed = parse_time(text)
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 date-time as written (aware with its offset, naive without one), or a date (its 00:00, naive);
    None if not one. A naive value is wall-clock time in some zone the caller decides.

    Years outside 1901 to 8999 are refused: nothing in a calendar is there, and date arithmetic near Python's
    limits (year 1 or 9999, an offset away) overflows.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day)
    if not 1900 < parsed.year < 9000:
        return None
    return parsed
