"""Reading request bodies for the REST API: size-limited, JSON objects only, and the 4xx answers when not."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bridge.domain import MAIL_ADDRESS
from bridge.web.problems import problem

# Each wrong field as RFC 9457's `invalid_params` entries: {"name": ..., "reason": ...}.
Invalid = list[dict[str, str]]
ADDRESS = MAIL_ADDRESS


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    raw = await request.content.read(limit + 1)
    return None if len(raw) > limit else raw


async def read_json(request: web.Request, limit: int, *, optional: bool = False) -> dict[str, Any] | web.Response:
    """The body as a JSON object, or the problem answer: 413 when too large, 400 when not a JSON object."""
    raw = await read_limited(request, limit)
    if raw is None:
        return too_large(limit)
    if optional and not raw.strip():
        return {}
    try:
        parsed = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return invalid_request([{"name": "body", "reason": "is not JSON"}])
    if not isinstance(parsed, dict):
        return invalid_request([{"name": "body", "reason": "must be a JSON object"}])
    return parsed


def invalid_request(invalid: Invalid) -> web.Response:
    names = ", ".join(dict.fromkeys(item["name"] for item in invalid))
    return problem(400, "Bad Request", f"invalid: {names}", invalid_params=invalid)


def too_large(limit: int) -> web.Response:
    return problem(413, "Content Too Large", f"the body is larger than {limit} bytes")


def unknown_fields(body: dict[str, Any], allowed: set[str], invalid: Invalid, *, prefix: str = "") -> None:
    for name in sorted(body.keys() - allowed):
        invalid.append({"name": f"{prefix}{name}", "reason": f"unknown field; expected one of {sorted(allowed)}"})
