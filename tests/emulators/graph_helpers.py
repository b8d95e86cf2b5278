"""Helpers for the Graph emulator's tests: fixtures on disk, a plain HTTP client, a webhook receiver, shapes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
ADELE_ID = "8ee44408-0679-472c-bc2a-692812af3437"
TENANT_ID = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
CLIENT_ID = "24d3b144-21ae-4080-943f-7067b395b913"


def fixture(name: str) -> Any:
    """A documented Graph payload from tests/fixtures/graph."""
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class GraphHttp:
    """A thin aiohttp client: relative paths go to the emulator, absolute URLs (links) are sent verbatim."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self.session = session
        self.base_url = base_url
        self.token = token

    async def request(
        self,
        method: str,
        target: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        # Links Graph handed out are used verbatim; paths written in a test are quoted as any client would.
        url = URL(target, encoded=True) if target.startswith("https://") else URL(self.base_url + target)
        sent = dict(headers or {})
        if auth and self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(method, url, json=json_body, headers=sent) as response:
            raw = await response.read()
            body: Any = None
            if raw:
                body = json.loads(raw) if "json" in response.content_type else raw.decode()
            return Answer(response.status, response.headers, body)

    async def get(self, target: str, **kwargs: Any) -> Answer:
        return await self.request("GET", target, **kwargs)

    async def post(self, target: str, json_body: Any = None, **kwargs: Any) -> Answer:
        return await self.request("POST", target, json_body=json_body, **kwargs)

    async def patch(self, target: str, json_body: Any = None, **kwargs: Any) -> Answer:
        return await self.request("PATCH", target, json_body=json_body, **kwargs)

    async def delete(self, target: str, **kwargs: Any) -> Answer:
        return await self.request("DELETE", target, **kwargs)


@dataclass
class Receiver:
    """A subscriber's webhook endpoints, recording what Graph sends them."""

    url: str = ""
    lifecycle_url: str = ""
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    validations: list[str] = field(default_factory=list)
    fail_next: int = 0
    delay: float = 0.0
    echo: Callable[[str], str] | None = None
    attempts: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def notifications(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches for item in batch]

    async def wait_for(self, count: int, *, lifecycle: bool = False, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.lifecycle if lifecycle else self.notifications) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.lifecycle if lifecycle else self.notifications

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(token)
            return web.Response(text=self.echo(token) if self.echo else token, content_type="text/plain")
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        body = await request.json()
        if request.path.endswith("/lifecycle"):
            self.lifecycle.extend(body["value"])
        else:
            self.batches.append(body["value"])
        self._changed.set()
        return web.Response(status=202)


GRAPH_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}$")
GRAPH_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")
ETAG = re.compile(r'^W/"[^"]+"$')


def assert_shape(expected: Any, actual: Any, *, exact: bool = False, path: str = "$") -> None:
    """`actual` has every key `expected` has (exactly those keys if `exact`), recursively, with the same JSON
    types where the fixture's value is not null."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        missing = set(expected) - set(actual)
        assert not missing, f"{path}: missing {sorted(missing)}"
        if exact:
            extra = set(actual) - set(expected)
            assert not extra, f"{path}: unexpected {sorted(extra)}"
        for key, value in expected.items():
            assert_shape(value, actual[key], exact=exact, path=f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if expected and actual:
            assert_shape(expected[0], actual[0], exact=exact, path=f"{path}[0]")
    elif expected is not None and actual is not None:
        assert type(expected) is type(actual), f"{path}: {type(expected).__name__} vs {type(actual).__name__}"


def event_payload(
    subject: str = "Customer visit",
    start: str = "2026-11-24T09:00:00",
    end: str = "2026-11-24T10:30:00",
    zone: str = "UTC",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        **extra,
    }


async def fetch_token(session: aiohttp.ClientSession, base_url: str, app: Any) -> str:
    form = {
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }
    async with session.post(f"{base_url}/{app.tenant_id}/oauth2/v2.0/token", data=form) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["access_token"]
        return token
