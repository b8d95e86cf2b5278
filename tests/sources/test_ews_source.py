"""The EWS source against the EWS emulator, through the real exchangelib over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from bridge.domain import FreeBusy, MailMessage
from bridge.sources.base import AuthFailed, ItemNotFound, MailboxNotFound, Throttled, Unavailable
from bridge.sources.ews import EwsSource
from emulators.ews import EwsEmulator
from tests.conftest import free_port
from tests.emulators.ews_fixtures import ALICE, BOB, SERVICE_PASSWORD, SERVICE_USER
from tests.sources.conformance import TODAY, WINDOW, CalendarSourceContract, at

pytestmark = pytest.mark.timeout(30)

_LEGACY = {
    FreeBusy.FREE: "Free",
    FreeBusy.TENTATIVE: "Tentative",
    FreeBusy.BUSY: "Busy",
    FreeBusy.OOF: "OOF",
    FreeBusy.WORKING_ELSEWHERE: "WorkingElsewhere",
    FreeBusy.UNKNOWN: "NoData",
}


# An answer and the LegacyFreeBusyStatus Exchange gives the item with it (a declined item keeps its own).
_RESPONSES: dict[str, tuple[str, str | None]] = {
    "accepted": ("Accept", "Busy"),
    "tentativelyAccepted": ("Tentative", "Tentative"),
    "declined": ("Decline", None),
}


class EwsOutlook:
    """Alice editing her calendar in Outlook: changes go straight into the emulated Exchange server."""

    def __init__(self, emulator: EwsEmulator, address: str) -> None:
        self._emulator = emulator
        self._address = address

    def create(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        show_as: FreeBusy = FreeBusy.BUSY,
        *,
        all_day: bool = False,
        private: bool = False,
        daily_until: date | None = None,
        organizer: bool = True,
    ) -> str:
        fields: dict[str, Any] = {
            "subject": subject,
            "start": start,
            "end": end,
            "free_busy": _LEGACY[show_as],
            "is_all_day": all_day,
            "sensitivity": "Private" if private else "Normal",
        }
        if not organizer:
            fields["organizer"] = "someone@fabrikam.com"
        if daily_until is not None:
            fields["recurrence"] = {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "endDate", "startDate": start.date().isoformat(), "endDate": daily_until.isoformat()},
            }
        return self._emulator.create_item_as_outlook(self._address, **fields)

    def update(self, item_id: str, **fields: Any) -> None:
        changes = {("free_busy" if name == "show_as" else name): value for name, value in fields.items()}
        if "free_busy" in changes:
            changes["free_busy"] = _LEGACY[changes["free_busy"]]
        self._emulator.update_item_as_outlook(self._address, item_id, **changes)

    def delete(self, item_id: str) -> None:
        self._emulator.delete_item_as_outlook(self._address, item_id)

    def cancel_meeting(self, item_id: str) -> None:
        self._emulator.update_item_as_outlook(self._address, item_id, is_cancelled=True)

    def respond(self, item_id: str, response: str) -> None:
        answer, shown = _RESPONSES[response]
        fields: dict[str, Any] = {"my_response": answer}
        if shown is not None:
            fields["free_busy"] = shown
        self._emulator.update_item_as_outlook(self._address, item_id, **fields)


def _source(emulator: EwsEmulator, *, password: str = SERVICE_PASSWORD, **options: Any) -> EwsSource:
    return EwsSource(
        "onprem",
        service_endpoint=emulator.url,
        username=SERVICE_USER,
        password=password,
        auth_type=options.pop("auth_type", "basic"),
        pool_size=options.pop("pool_size", 4),
        **options,
    )


@pytest.fixture
async def source(ews: EwsEmulator) -> AsyncIterator[EwsSource]:
    made = _source(ews)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def mailbox() -> str:
    return ALICE


@pytest.fixture
def outlook(ews: EwsEmulator, mailbox: str) -> EwsOutlook:
    return EwsOutlook(ews, mailbox)


class TestEwsSourceContract(CalendarSourceContract):
    """The shared `CalendarSource` contract, against the EWS emulator."""


# --- what is particular to EWS ---------------------------------------------------------------------------------


def _operations(ews: EwsEmulator, name: str) -> list[dict[str, Any]]:
    return [entry for entry in ews.stats()["log"] if entry["operation"] == name]


async def test_a_window_over_the_find_count_limit_is_read_whole(
    source: EwsSource, mailbox: str, outlook: EwsOutlook, ews: EwsEmulator
) -> None:
    ews.find_count_limit = 5
    for day in range(1, 13):
        outlook.create(f"Visit {day}", at(day), at(day, 10))
    outlook.create("Stand-up", at(1, 8), at(1, 8) + timedelta(minutes=15), daily_until=TODAY + timedelta(days=12))

    result = await source.read_delta(mailbox, WINDOW, None)

    assert len(result.upserts) == 24
    assert len({a.item_id for a in result.upserts}) == 24
    codes = [code for entry in _operations(ews, "FindItem") for code in entry["codes"]]
    assert "ErrorExceededFindCountLimit" in codes


async def test_the_chunk_span_that_worked_is_reused(
    source: EwsSource, mailbox: str, outlook: EwsOutlook, ews: EwsEmulator
) -> None:
    ews.find_count_limit = 5
    for day in range(1, 13):
        outlook.create(f"Visit {day}", at(day), at(day, 10))
    await source.read_delta(mailbox, WINDOW, None)
    ews.clear_stats()

    await source.read_delta(mailbox, WINDOW, None)

    assert all(entry["codes"] == ["NoError"] for entry in _operations(ews, "FindItem"))


async def test_server_busy_is_throttled_with_its_back_off_for_that_mailbox_only(
    source: EwsSource, ews: EwsEmulator
) -> None:
    ews.server_busy(back_off_ms=2500, mailbox=ALICE)

    with pytest.raises(Throttled) as raised:
        await source.read_delta(ALICE, WINDOW, None)
    other = await source.read_delta(BOB, WINDOW, None)

    assert raised.value.retry_after == 2.5
    assert other.full_round


async def test_an_unknown_mailbox_is_not_found(source: EwsSource, ews: EwsEmulator) -> None:
    with pytest.raises(MailboxNotFound):
        await source.read_delta("nobody@corp.example", WINDOW, None)
    report = await source.test_connection((ALICE, "nobody@corp.example"))

    assert report.passed == (f"{ALICE}: calendar readable",)
    assert report.problems == (f"nobody@corp.example: no such mailbox on {ews.url}",)


async def test_impersonation_denied_is_mailbox_not_found(source: EwsSource, ews: EwsEmulator) -> None:
    ews.set_impersonation(SERVICE_USER, False)

    with pytest.raises(MailboxNotFound) as raised:
        await source.read_delta(ALICE, WINDOW, None)
    report = await source.test_connection((ALICE,))

    assert raised.value.code == "ErrorImpersonateUserDenied"
    assert "may not impersonate" in report.problems[0]


async def test_a_wrong_password_is_an_auth_failure(ews: EwsEmulator) -> None:
    wrong = _source(ews, password="not-the-password")
    try:
        with pytest.raises(AuthFailed):
            await wrong.read_delta(ALICE, WINDOW, None)
        report = await wrong.test_connection((ALICE, BOB))
    finally:
        await wrong.close()

    assert len(report.problems) == 1  # the other mailboxes would fail the same way: not tried
    assert f"the service account {SERVICE_USER} was refused" in report.problems[0]


async def test_an_unreachable_server_is_unavailable() -> None:
    emulator = EwsEmulator(tls=False)
    await emulator.start()
    url = emulator.url
    await emulator.stop()
    source = EwsSource("gone", service_endpoint=url, username=SERVICE_USER, password="x", auth_type="basic")
    try:
        with pytest.raises(Unavailable) as raised:
            await source.read_delta(ALICE, WINDOW, None)
        report = await source.test_connection((ALICE,))
    finally:
        await source.close()

    port = url.split(":")[2].split("/")[0]
    refused = f"connection refused by 127.0.0.1:{port} (sources.gone.service_endpoint)"
    assert str(raised.value) == f"delta of {ALICE}: {refused}"  # what the sync worker logs
    assert report.unreachable == (refused,)
    assert report.problems == ()


async def test_tls_is_verified_with_the_configured_ca_file(tmp_path: Any) -> None:
    async with EwsEmulator(ca_file=tmp_path / "ca.pem") as emulator:
        emulator.add_mailbox(ALICE)
        emulator.add_service_account(SERVICE_USER, SERVICE_PASSWORD)
        emulator.create_item_as_outlook(ALICE, subject="Visit", start=at(1), end=at(1, 10))
        trusting = _source(emulator, verify=str(emulator.ca_file))
        untrusting = _source(emulator)
        try:
            result = await trusting.read_delta(ALICE, WINDOW, None)
            report = await untrusting.test_connection((ALICE,))
        finally:
            await trusting.close()
            await untrusting.close()

    assert [a.subject for a in result.upserts] == ["Visit"]
    assert "TLS verification" in report.problems[0]


async def test_reads_do_not_block_the_event_loop(
    source: EwsSource, mailbox: str, outlook: EwsOutlook, ews: EwsEmulator
) -> None:
    for day in range(1, 29):
        outlook.create(f"Visit {day}", at(day), at(day, 10))
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    results = await asyncio.gather(*(source.read_delta(mailbox, WINDOW, None) for _ in range(8)))
    done.set()
    await ticking

    assert all(len(result.upserts) == 28 for result in results)
    # The emulator serves on this same loop, so some lag is its own work; a read blocking the loop would deadlock.
    assert max(lags) < 0.25, max(lags)


async def test_an_unchanged_calendar_costs_one_sync_and_no_view(
    source: EwsSource, mailbox: str, outlook: EwsOutlook, ews: EwsEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    first = await source.read_delta(mailbox, WINDOW, None)
    ews.clear_stats()

    second = await source.read_delta(mailbox, WINDOW, first.token)

    assert (second.upserts, second.removed, second.full_round) == ((), (), False)
    assert [entry["operation"] for entry in ews.stats()["log"]] == ["SyncFolderItems"]


async def test_a_change_after_a_restart_reads_a_full_round(
    source: EwsSource, mailbox: str, outlook: EwsOutlook, ews: EwsEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    first = await source.read_delta(mailbox, WINDOW, None)
    outlook.create("New", at(2), at(2, 10))
    restarted = _source(ews)
    try:
        second = await restarted.read_delta(mailbox, WINDOW, first.token)
    finally:
        await restarted.close()

    assert second.full_round
    assert sorted(a.subject for a in second.upserts) == ["New", "Visit"]


async def test_an_invalid_sync_state_starts_from_nothing(source: EwsSource, mailbox: str, outlook: EwsOutlook) -> None:
    outlook.create("Visit", at(1), at(1, 10))

    result = await source.read_delta(mailbox, WINDOW, "bm90IGEgc3RhdGU=")

    assert result.full_round
    assert [a.subject for a in result.upserts] == ["Visit"]


async def test_an_occurrence_keeps_its_id_when_written_and_names_its_series(
    source: EwsSource, mailbox: str, outlook: EwsOutlook
) -> None:
    series = outlook.create("Stand-up", at(1, 8), at(1, 9), daily_until=TODAY + timedelta(days=3))
    first = await source.read_delta(mailbox, WINDOW, None)
    second_day = next(a for a in first.upserts if a.start == at(2, 8))

    written = await source.update(mailbox, second_day.item_id, _patch(subject="Moved"), second_day.change_key)
    read = await source.read_item(mailbox, second_day.item_id)

    assert written.item_id == second_day.item_id
    assert read is not None
    assert (read.subject, read.series_id, read.kind.value) == ("Moved", series, "exception")
    await source.delete(mailbox, second_day.item_id, written.change_key)
    assert await source.read_item(mailbox, second_day.item_id) is None


async def test_send_mail_is_sent_and_saved_as_the_sender(source: EwsSource, ews: EwsEmulator) -> None:
    await source.send_mail(
        BOB, MailMessage("Absence noted", "See you Monday.", ("boss@corp.example",), cc=("hr@corp.example",))
    )

    [sent] = ews.sent_mail()
    assert (sent["from"], sent["kind"], sent["subject"]) == (BOB, "Message", "Absence noted")
    assert (sent["to"], sent["cc"]) == (["boss@corp.example"], ["hr@corp.example"])
    [create] = _operations(ews, "CreateItem")
    assert create["mailbox"] == BOB


async def test_updating_a_missing_item_is_item_not_found(source: EwsSource, mailbox: str) -> None:
    created = await source.create(mailbox, _draft(), "tx-m")
    await source.delete(mailbox, created.item_id)

    with pytest.raises(ItemNotFound):
        await source.update(mailbox, created.item_id, _patch(subject="Too late"), None)


def _patch(**fields: Any) -> Any:
    from bridge.domain import AppointmentPatch

    return AppointmentPatch(**fields)


def _draft() -> Any:
    from bridge.domain import AppointmentDraft

    return AppointmentDraft("Meeting", at(1), at(1, 10), FreeBusy.BUSY)


async def observed_statuses(ews: EwsEmulator, auth_type: str) -> tuple[list[str], list[str]]:
    """What a source's observer heard for one read with the right password, and for one with a wrong one."""
    heard: tuple[list[str], list[str]] = ([], [])
    for password, seen in ((SERVICE_PASSWORD, heard[0]), ("wrong", heard[1])):
        source = _source(ews, auth_type=auth_type, password=password, on_request=seen.append)
        try:
            with contextlib.suppress(AuthFailed):
                await source.read_delta(ALICE, WINDOW, None)
        finally:
            await source.close()
    return heard


async def test_every_request_is_observed_by_its_status(ews: EwsEmulator) -> None:
    good, refused = await observed_statuses(ews, "basic")

    assert good
    assert set(good) == {"200"}
    assert set(refused) == {"401"}


async def test_an_ntlm_challenge_is_not_observed_as_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTLM_USER_FILE", "")  # restored afterwards; the emulator points it at its user file
    async with EwsEmulator(tls=False, ntlm=True) as ews:
        ews.add_mailbox(ALICE)
        ews.add_service_account(SERVICE_USER, SERVICE_PASSWORD, impersonation=True)
        good, refused = await observed_statuses(ews, "ntlm")

    assert good
    assert set(good) == {"200"}
    assert "401" in refused


async def test_an_unreachable_server_is_observed_as_such() -> None:
    seen: list[str] = []
    source = EwsSource(
        "onprem", service_endpoint=f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx", username="svc",
        password="x", auth_type="basic", on_request=seen.append,
    )  # fmt: skip
    try:
        with pytest.raises(Unavailable):
            await source.read_delta(ALICE, WINDOW, None)
    finally:
        await source.close()
    assert seen
    assert set(seen) == {"unreachable"}
