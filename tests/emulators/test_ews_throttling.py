"""Exchange's notification limits in the EWS emulator: streaming connections and subscriptions per budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
from exchangelib import DELEGATE, Account
from exchangelib.errors import ErrorExceededConnectionCount, ErrorExceededSubscriptionCount

from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import (  # noqa: F401
    ALICE,
    BOB,
    SERVICE_PASSWORD,
    SERVICE_USER,
    Connect,
    alice_fixture,
    basic_headers,
    connect_fixture,
    ews_fixture,
    held_stream,
    soap_request,
)

pytestmark = pytest.mark.timeout(30)

DELEGATE_USER = "CORP\\svc-delegate"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as made:
        yield made


async def test_a_connection_beyond_the_hanging_connection_limit_gets_error_exceeded_connection_count(
    ews: EwsEmulator, session: aiohttp.ClientSession
) -> None:
    ews.streams.minute = 60.0
    async with AsyncExitStack() as held:
        firsts = [await held.enter_async_context(held_stream(ews, session, ALICE)) for _ in range(3)]
        async with held_stream(ews, session, ALICE) as refused:
            pass

    assert all(b"<m:ConnectionStatus>OK<" in first for first in firsts)
    assert b'ResponseClass="Error"' in refused
    assert b"<m:ResponseCode>ErrorExceededConnectionCount</m:ResponseCode>" in refused
    assert b"<m:ConnectionStatus>Closed</m:ConnectionStatus>" in refused


async def test_impersonating_another_mailbox_draws_on_that_mailboxs_budget(
    ews: EwsEmulator, session: aiohttp.ClientSession
) -> None:
    ews.streams.minute = 60.0
    async with AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(held_stream(ews, session, ALICE))
        bobs = await held.enter_async_context(held_stream(ews, session, BOB))
        open_connections = len(ews.streams.open)

    assert b"<m:ConnectionStatus>OK<" in bobs
    assert open_connections == 4


async def test_without_impersonation_the_service_accounts_own_budget_is_charged(
    ews: EwsEmulator, session: aiohttp.ClientSession
) -> None:
    ews.streams.minute = 60.0
    ews.org.account(SERVICE_USER).full_access = True  # type: ignore[union-attr]
    async with AsyncExitStack() as held:
        for address in (ALICE, BOB, ALICE):
            await held.enter_async_context(held_stream(ews, session, address, impersonating=False))
        async with held_stream(ews, session, BOB, impersonating=False) as refused:
            pass

    assert b"ErrorExceededConnectionCount" in refused


async def test_a_closed_connection_frees_its_place(ews: EwsEmulator, session: aiohttp.ClientSession) -> None:
    ews.limits.hanging_connections = 1
    async with held_stream(ews, session, ALICE):
        ews.streams.close_all()
        await asyncio.sleep(0.1)
        async with held_stream(ews, session, ALICE) as second:
            pass

    assert b"<m:ConnectionStatus>OK<" in second


async def test_exchangelib_reads_the_refusal_as_error_exceeded_connection_count(
    ews: EwsEmulator, session: aiohttp.ClientSession, alice: Account
) -> None:
    ews.streams.minute = 60.0
    subscription_id = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())
    async with AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(held_stream(ews, session, ALICE))
        with pytest.raises(ErrorExceededConnectionCount):
            await asyncio.to_thread(lambda: list(alice.calendar.get_streaming_events(subscription_id, 1)))


async def test_a_subscription_beyond_ews_max_subscriptions_gets_error_exceeded_subscription_count(
    ews: EwsEmulator, alice: Account
) -> None:
    ews.limits.subscriptions = 2
    for _ in range(2):
        await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())

    with pytest.raises(ErrorExceededSubscriptionCount, match="exceeded the available subscriptions"):
        await asyncio.to_thread(lambda: alice.calendar.subscribe_to_pull())


async def test_subscriptions_are_charged_to_the_impersonated_mailbox(ews: EwsEmulator, connect: Connect) -> None:
    ews.limits.subscriptions = 1
    alice, bob = connect(ALICE), connect(BOB)
    await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())

    await asyncio.to_thread(lambda: bob.calendar.subscribe_to_streaming())  # bob's budget: still room
    with pytest.raises(ErrorExceededSubscriptionCount):
        await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())


async def test_without_impersonation_subscriptions_are_charged_to_the_calling_account(
    ews: EwsEmulator, connect: Connect
) -> None:
    ews.limits.subscriptions = 1
    ews.add_service_account(DELEGATE_USER, SERVICE_PASSWORD, impersonation=False, full_access=True)
    alice = connect(ALICE, username=DELEGATE_USER, access_type=DELEGATE)
    bob = connect(BOB, username=DELEGATE_USER, access_type=DELEGATE)
    await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())

    with pytest.raises(ErrorExceededSubscriptionCount):
        await asyncio.to_thread(lambda: bob.calendar.subscribe_to_streaming())


async def test_an_unsubscribed_subscription_no_longer_counts(ews: EwsEmulator, alice: Account) -> None:
    ews.limits.subscriptions = 1
    first = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())
    await asyncio.to_thread(lambda: alice.calendar.unsubscribe(first))

    assert await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())


def _get_calendar(impersonating: str | None) -> str:
    """A GetFolder of the calendar, impersonating `impersonating` (or as the calling account)."""
    return soap_request(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>"
        '<t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>',
        impersonating,
    )


async def _at_once(ews: EwsEmulator, session: aiohttp.ClientSession, *mailboxes: str) -> list[tuple[int, bytes]]:
    async def one(address: str) -> tuple[int, bytes]:
        async with session.post(ews.url, data=_get_calendar(address), headers=basic_headers()) as response:
            return response.status, await response.read()

    return await asyncio.gather(*(one(address) for address in mailboxes))


async def test_a_request_beyond_ews_max_concurrency_gets_error_exceeded_connection_count(
    ews: EwsEmulator, session: aiohttp.ClientSession
) -> None:
    ews.limits.concurrency = 2
    ews.latency_ms = 300  # each request is under way that long

    answers = await _at_once(ews, session, ALICE, ALICE, ALICE, BOB)

    refused = [body for status, body in answers if status == 500]
    assert len(refused) == 1  # the third of Alice's; Bob's budget is his own
    assert b"<faultcode" in refused[0]
    assert b"a:ErrorExceededConnectionCount" in refused[0]
    assert sum(1 for status, body in answers if status == 200 and b'ResponseClass="Success"' in body) == 3
    assert ews.stats()["peakConcurrency"] == {"impersonated:alice@corp.example": 2, "impersonated:bob@corp.example": 1}

    assert [status for status, _ in await _at_once(ews, session, ALICE, ALICE)] == [200, 200]  # the places are free


async def test_exchangelib_backs_off_from_error_exceeded_connection_count_and_then_gives_up(
    ews: EwsEmulator, alice: Account
) -> None:
    """exchangelib answers the code by shrinking its connection pool and retrying; at one connection it raises."""
    ews.limits.concurrency = 0  # every request refused: another application uses the whole budget

    with pytest.raises(ErrorExceededConnectionCount, match="exceeded the available concurrent connections"):
        await asyncio.to_thread(lambda: alice.calendar.refresh())
