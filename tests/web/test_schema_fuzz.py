"""A bounded property-based run (schemathesis) against the served OpenAPI document.

Every operation gets generated requests, valid and invalid, against the whole bridge on loopback (the Graph
emulator behind it, so writes really reach a calendar). No answer may be a 5xx other than the documented 502/503,
and every answer must match the document: status, content type, headers and body schema. On SQLite only: the
document is the same whichever database holds the state, and the end-to-end tests cover PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.world import API_TOKEN, World, ready

# Cases per operation: enough to reach every validation branch now and then, small enough for `make test`.
CASES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_generated_requests_get_documented_answers(world: World) -> None:
    await ready(world)
    _, served, _ = await world.api("GET", "/api/v1/openapi.json")
    with requests.Session() as session:
        schema = schemathesis.openapi.from_dict(served)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            await asyncio.to_thread(_fuzz, operation, world, session)


def _fuzz(operation: Any, world: World, session: requests.Session) -> None:
    # Half the cases name the mailbox the bridge serves, so that valid requests get past the 404.
    @given(case=operation.as_strategy(), real_mailbox=st.booleans())
    @settings(
        max_examples=CASES,
        deadline=None,
        # The same cases every run: `make test` must not pass or fail by luck. Explore further by hand with
        # `derandomize=False` and more cases; what such a run finds becomes a fix and stays found here.
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, real_mailbox: bool) -> None:
        if real_mailbox and "mailbox" in (case.path_parameters or {}):
            case.path_parameters["mailbox"] = world.mailbox
        case.call_and_validate(
            base_url=world.service.url,
            session=session,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            checks=CHECKS,
            timeout=30,
        )

    run()
