"""Who may use the EWS emulator, and the faults it answers on demand, seen by exchangelib."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from exchangelib import DELEGATE, NTLM, Account
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    UnauthorizedError,
)
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import (  # noqa: F401
    ALICE,
    BOB,
    SERVICE_PASSWORD,
    SERVICE_USER,
    Connect,
    alice_fixture,
    connect_fixture,
    ews_fixture,
    make_account,
)

pytestmark = pytest.mark.timeout(30)


def calendar_id(account: Account) -> str:
    return str(account.calendar.id)


async def test_wrong_password_is_refused_with_401(ews: EwsEmulator, connect: Connect) -> None:
    account = connect(ALICE, password="wrong")

    with pytest.raises(UnauthorizedError):
        await asyncio.to_thread(calendar_id, account)
    assert ews.stats()["log"][-1]["status"] == 401


async def test_service_account_without_impersonation_right_is_denied(ews: EwsEmulator, connect: Connect) -> None:
    ews.set_impersonation(SERVICE_USER, False)

    with pytest.raises(ErrorImpersonateUserDenied):
        await asyncio.to_thread(calendar_id, connect(ALICE))


async def test_unknown_mailbox_does_not_exist(connect: Connect) -> None:
    with pytest.raises(ErrorNonExistentMailbox):
        await asyncio.to_thread(calendar_id, connect("nobody@corp.example"))


async def test_removed_mailbox_disappears(ews: EwsEmulator, alice: Account) -> None:
    await asyncio.to_thread(calendar_id, alice)
    ews.remove_mailbox(ALICE)

    with pytest.raises(ErrorNonExistentMailbox):
        await asyncio.to_thread(lambda: list(alice.calendar.view(start=_start(), end=_start(days=1))))


async def test_owner_may_open_their_own_mailbox_but_not_another(ews: EwsEmulator, connect: Connect) -> None:
    ews.add_mailbox("carol@corp.example", password="carol-pw")

    own = connect("carol@corp.example", username="carol@corp.example", password="carol-pw", access_type=DELEGATE)
    other = connect(BOB, username="carol@corp.example", password="carol-pw", access_type=DELEGATE)

    assert await asyncio.to_thread(calendar_id, own) == ews.org.mailboxes["carol@corp.example"].folders["calendar"]
    with pytest.raises(ErrorAccessDenied):
        await asyncio.to_thread(calendar_id, other)


async def test_server_busy_carries_the_back_off_and_is_counted(ews: EwsEmulator, alice: Account) -> None:
    ews.server_busy(1, back_off_ms=2500, operation="GetFolder", mailbox=ALICE)

    with pytest.raises(ErrorServerBusy) as raised:
        await asyncio.to_thread(calendar_id, alice)
    assert raised.value.back_off == 2.5
    assert await asyncio.to_thread(calendar_id, alice)  # the fault was used up
    assert ews.stats()["codes"]["ErrorServerBusy"] == 1


async def test_fault_targets_one_mailbox(ews: EwsEmulator, connect: Connect) -> None:
    ews.fail("ErrorMailboxStoreUnavailable", 5, mailbox=BOB)

    assert await asyncio.to_thread(calendar_id, connect(ALICE))
    with pytest.raises(ErrorMailboxStoreUnavailable):
        await asyncio.to_thread(calendar_id, connect(BOB))


async def test_stats_log_operations_with_timestamps(ews: EwsEmulator, alice: Account) -> None:
    before = time.time()
    await asyncio.to_thread(calendar_id, alice)

    log = ews.stats()["log"]
    assert [entry["operation"] for entry in log] == ["GetFolder", "GetFolder"]
    assert all(entry["started"] >= before and entry["mailbox"] == ALICE for entry in log)
    assert {entry["account"] for entry in log} == {SERVICE_USER}


async def test_exchangelib_talks_https_with_the_loopback_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file = tmp_path / "ca.pem"

    class TrustingAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:
            kwargs["verify"] = str(ca_file)
            return super().send(request, **kwargs)

    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", TrustingAdapter)
    async with EwsEmulator(ca_file=ca_file) as ews:
        ews.add_mailbox(ALICE)
        ews.add_service_account(SERVICE_USER, SERVICE_PASSWORD)
        account = make_account(ews.url, ALICE)
        try:
            assert ews.url.startswith("https://127.0.0.1:")
            assert await asyncio.to_thread(calendar_id, account) == ews.org.mailboxes[ALICE].folders["calendar"]
        finally:
            account.protocol.close()


def _start(days: int = 0) -> Any:
    from exchangelib.ewsdatetime import UTC, EWSDateTime

    return EWSDateTime(2026, 3, 1 + days, tzinfo=UTC)


async def test_ntlm_handshake_through_pyspnego(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTLM_USER_FILE", "")  # restored afterwards; the emulator points it at its user file
    async with EwsEmulator(tls=False, ntlm=True) as ews:
        ews.add_mailbox(ALICE)
        ews.add_service_account(SERVICE_USER, SERVICE_PASSWORD)
        good = make_account(ews.url, ALICE, auth_type=NTLM)
        bad = make_account(ews.url, ALICE, auth_type=NTLM, password="wrong")
        try:
            assert await asyncio.to_thread(calendar_id, good) == ews.org.mailboxes[ALICE].folders["calendar"]
            with pytest.raises(UnauthorizedError):
                await asyncio.to_thread(calendar_id, bad)
        finally:
            good.protocol.close()
            bad.protocol.close()
