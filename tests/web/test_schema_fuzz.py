"""A bounded property-based run (schemathesis) against the served OpenAPI document.

Every operation gets generated requests, valid and invalid, against the whole bridge on loopback (the Graph
emulator behind it, so writes really reach a calendar). No answer may be a 5xx other than the documented 502/503,
and every answer must match the document: status, content type, headers and body schema. Requests the document
says are invalid (schemathesis' negative mode) must be refused with a 4xx: so the document and the routes'
validation cannot drift apart in either direction. On SQLite only: the document is the same whichever database
holds the state, and the end-to-end tests cover PostgreSQL.

`make fuzz` runs the same with many more cases and fresh randomness (tests/fuzzing.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.fuzzing import fuzz_settings
from tests.world import API_TOKEN, World, ready

# Cases per operation and mode: enough to reach every validation branch now and then, small enough for `make test`.
CASES = 30
# Refusals count as refusals whatever their 4xx: schemathesis' default list leaves out 408 and 413, the bridge's
# answers to a body that comes too slowly or is too large (a negative string of 400 KB is one).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "408", "409", "413", "415", "422", "428", "429"),
                    "5xx",  # not_a_server_error judges these
                ]
            }
        }
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.fuzz
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_generated_requests_get_documented_answers(world: World) -> None:
    await ready(world)
    _, served, _ = await world.api("GET", "/api/v1/openapi.json")
    with requests.Session() as session:
        schema = schemathesis.openapi.from_dict(served, config=CONFIG)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                await asyncio.to_thread(_fuzz, operation, mode, world, session)


def _fuzz(operation: Any, mode: GenerationMode, world: World, session: requests.Session) -> None:
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    # Half the cases name the mailbox the bridge serves, so that valid requests get past the 404.
    @given(case=operation.as_strategy(generation_mode=mode), real_mailbox=st.booleans())
    @fuzz_settings(CASES, long_cases="FUZZ_API_CASES")
    def run(case: Any, real_mailbox: bool) -> None:
        if real_mailbox and "mailbox" in (case.path_parameters or {}):
            case.path_parameters["mailbox"] = world.mailbox
        # The real token replaces the generated one; a negative case that leaves the header out keeps it out.
        authorized = "Authorization" in (case.headers or {}) or mode is GenerationMode.POSITIVE
        case.call_and_validate(
            base_url=world.service.url,
            session=session,
            headers={"Authorization": f"Bearer {API_TOKEN}"} if authorized else {},
            checks=checks,
            timeout=30,
        )

    run()
