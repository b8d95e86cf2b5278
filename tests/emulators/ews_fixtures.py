"""Pytest fixtures for the EWS emulator and the real exchangelib talking to it over loopback HTTP.

- `ews`: a started `EwsEmulator` (plain HTTP, keep-alive frames every 0.2 s, a ConnectionTimeout "minute" of
  1 s) with mailboxes alice@ and bob@corp.example and the service account `CORP\\svc-bridge`, which may
  impersonate; stopped afterwards.
- `connect`: a factory for exchangelib `Account`s against it (impersonation by default); their connection
  pools are closed afterwards.
- `alice`: an impersonated exchangelib `Account` for alice@corp.example.
- `held_stream(ews, session, address)`: a GetStreamingEvents connection held open (raw HTTP), charged to the
  impersonated mailbox's throttling budget (or the service account's).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from exchangelib import BASIC, IMPERSONATION, Account, Build, Configuration, Credentials, Version
from exchangelib.ewsdatetime import EWSTimeZone

from emulators.ews import EwsEmulator
from emulators.ews_throttling import budget

ALICE = "alice@corp.example"
BOB = "bob@corp.example"
SERVICE_USER = "CORP\\svc-bridge"
SERVICE_PASSWORD = "s3cret-Passw0rd"
BERLIN = EWSTimeZone("Europe/Berlin")
# A fixed build: exchangelib then sends RequestServerVersion Exchange2016 and probes nothing.
EXCHANGE_2016 = Version(build=Build(15, 1, 2507, 6))

Connect = Callable[..., Account]


def make_account(
    url: str,
    address: str,
    *,
    username: str = SERVICE_USER,
    password: str = SERVICE_PASSWORD,
    access_type: str = IMPERSONATION,
    auth_type: str = BASIC,
) -> Account:
    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(username, password),
        auth_type=auth_type,
        version=EXCHANGE_2016,
        max_connections=4,
    )
    return Account(address, config=config, autodiscover=False, access_type=access_type, default_timezone=BERLIN)


@pytest.fixture(name="ews")
async def ews_fixture() -> AsyncIterator[EwsEmulator]:
    emulator = EwsEmulator(tls=False, keepalive_interval=0.2, connection_minute=1.0)
    emulator.add_mailbox(ALICE, "Alice Example")
    emulator.add_mailbox(BOB, "Bob Example")
    emulator.add_service_account(SERVICE_USER, SERVICE_PASSWORD, impersonation=True)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture(name="connect")
def connect_fixture(ews: EwsEmulator) -> Iterator[Connect]:
    made: list[Account] = []

    def factory(address: str = ALICE, **options: Any) -> Account:
        account = make_account(ews.url, address, **options)
        made.append(account)
        return account

    yield factory
    for account in made:
        account.protocol.close()


@pytest.fixture(name="alice")
def alice_fixture(connect: Connect) -> Account:
    return connect(ALICE)


def _subscribe(ews: EwsEmulator, address: str, *, budget: str) -> str:
    return ews.subscriptions_registry.subscribe(
        ews.org.mailboxes[address],
        kind="streaming",
        owner=SERVICE_USER,
        folders=frozenset({"calendar"}),
        event_types=frozenset({"CreatedEvent"}),
        budget=budget,
    ).id


def basic_headers() -> dict[str, str]:
    token = base64.b64encode(f"{SERVICE_USER}:{SERVICE_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"}


def soap_request(body: str, impersonating: str | None) -> str:
    """A SOAP envelope around `body` (one operation's element), impersonating `impersonating` (or as the calling
    account), shaped as exchangelib sends it."""
    header = (
        f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{impersonating}</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation>"
        if impersonating
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        f'<t:RequestServerVersion Version="Exchange2016"/>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>'
    )


def streaming_request(subscription_id: str, impersonating: str | None) -> str:
    """A GetStreamingEvents envelope for one subscription, for ConnectionTimeout 1, as exchangelib sends it."""
    return soap_request(
        f"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{subscription_id}</t:SubscriptionId>"
        "</m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>",
        impersonating,
    )


@asynccontextmanager
async def held_stream(
    ews: EwsEmulator, session: aiohttp.ClientSession, address: str, *, impersonating: bool = True
) -> AsyncIterator[bytes]:
    """One GetStreamingEvents connection, held open while the context lasts; yields its first frame."""
    charged = budget(SERVICE_USER, address, impersonating=impersonating)
    body = streaming_request(_subscribe(ews, address, budget=charged), address if impersonating else None)
    headers = basic_headers()
    if not impersonating:
        headers["X-AnchorMailbox"] = address
    async with session.post(ews.url, data=body, headers=headers) as response:
        first, _ = await response.content.readchunk()
        yield first


# Test modules import the fixtures by these names: `from tests.emulators.ews_fixtures import ews_fixture, ...`.
FIXTURES = (ews_fixture, connect_fixture, alice_fixture)
