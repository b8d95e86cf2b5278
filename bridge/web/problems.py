"""Errors as RFC 9457 problem documents (`application/problem+json`), the one error shape of the REST API."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    return web.Response(status=status, text=problem_text(status, title, detail, **extra), content_type=PROBLEM_TYPE)


def problem_text(status: int, title: str, detail: str = "", **extra: Any) -> str:
    """The document alone, for the answers aiohttp builds itself (an `HTTPException` raised mid-handler)."""
    return json.dumps(problem_document(status, title, detail, **extra))


def problem_document(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """The document as a value, for the relay's answers (bridge/web/answers.py), which the store also keeps."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body
