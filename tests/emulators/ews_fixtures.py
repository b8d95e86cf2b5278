"""Pytest fixtures for the EWS emulator and the real exchangelib talking to it over loopback HTTP.

- `ews`: a started `EwsEmulator` (plain HTTP, keep-alive frames every 0.2 s, a ConnectionTimeout "minute" of
  1 s) with mailboxes alice@ and bob@corp.example and the service account `CORP\\svc-bridge`, which may
  impersonate; stopped afterwards.
- `connect`: a factory for exchangelib `Account`s against it (impersonation by default); their connection
  pools are closed afterwards.
- `alice`: an impersonated exchangelib `Account` for alice@corp.example.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from exchangelib import BASIC, IMPERSONATION, Account, Build, Configuration, Credentials, Version
from exchangelib.ewsdatetime import EWSTimeZone

from bridge.emulators.ews import EwsEmulator

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


# Test modules import the fixtures by these names: `from tests.emulators.ews_fixtures import ews_fixture, ...`.
FIXTURES = (ews_fixture, connect_fixture, alice_fixture)
