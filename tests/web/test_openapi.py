"""The OpenAPI document is true: every /api/v1 route is in it, and real answers validate against it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from bridge.store import Database
from bridge.web import schemas
from bridge.web.openapi import document
from tests.web import WORKFORCE_TOKEN, Client, add_feed, bearer


def response_schema(path: str, status: int, content_type: str) -> dict[str, Any]:
    operation = document()["paths"][path]["get"]
    schema: dict[str, Any] = operation["responses"][str(status)]["content"][content_type]["schema"]
    return resolve(schema)


def resolve(schema: Any) -> Any:
    """Inline `#/components/schemas/...` references so a plain validator can check against the schema."""
    components = document()["components"]["schemas"]
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolve(components[schema["$ref"].rsplit("/", 1)[1]])
        return {key: resolve(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [resolve(item) for item in schema]
    return schema


async def test_the_document_is_served_without_a_token(app_client: Client) -> None:
    response = await app_client.get("/api/v1/openapi.json")

    assert response.status == 200
    assert (await response.json())["openapi"] == "3.1.0"


async def test_every_api_route_is_documented(app_client: Client) -> None:
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    registered = {
        (route.resource.canonical, route.method.lower())
        for route in app_client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1/") and route.method != "HEAD"
    }

    assert registered - {("/api/v1/openapi.json", "get")} == documented


@pytest.mark.parametrize(
    ("url", "path", "status"),
    [
        ("/api/v1/changes", "/api/v1/changes", 200),
        ("/api/v1/changes?limit=0", "/api/v1/changes", 400),
        ("/api/v1/mailboxes/adele@contoso.com/appointments", "/api/v1/mailboxes/{mailbox}/appointments", 200),
        ("/api/v1/mailboxes/adele@contoso.com/appointments?from=x", "/api/v1/mailboxes/{mailbox}/appointments", 400),
        ("/api/v1/mailboxes/nobody@contoso.com/timeline", "/api/v1/mailboxes/{mailbox}/timeline", 404),
        ("/api/v1/mailboxes/adele@contoso.com/timeline", "/api/v1/mailboxes/{mailbox}/timeline", 200),
    ],
)
async def test_answers_validate_against_the_document(
    app_client: Client,
    db: Database,
    calendar: None,
    url: str,
    path: str,
    status: int,
) -> None:
    add_feed(db, 3, address="feed@contoso.com")
    response = await app_client.get(url, headers=bearer(WORKFORCE_TOKEN))

    assert response.status == status
    schema = response_schema(path, status, response.content_type)
    errors = sorted(Draft202012Validator(schema).iter_errors(await response.json()), key=str)
    assert errors == []


async def test_the_unauthorised_answer_is_documented(app_client: Client) -> None:
    response = await app_client.get("/api/v1/changes")

    schema = response_schema("/api/v1/changes", 401, response.content_type)
    assert list(Draft202012Validator(schema).iter_errors(await response.json())) == []


def test_every_body_is_a_declared_struct_and_no_schema_is_written_twice() -> None:
    """Bodies are declared once, in bridge/web/schemas.py: the document only refers to what is generated from them."""
    components = document()["components"]["schemas"]
    declared = {
        name
        for name, kind in vars(schemas).items()
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and kind.__module__ == schemas.__name__
    }
    bodies = [
        content["schema"]
        for item in document()["paths"].values()
        for operation in item.values()
        for holder in [operation.get("requestBody", {}), *operation["responses"].values()]
        for media, content in holder.get("content", {}).items()
        if media.endswith("json")
    ]

    assert declared <= set(components)
    assert bodies
    assert all(body["$ref"].rsplit("/", 1)[1] in declared for body in bodies), bodies
