"""The Graph source against the Graph emulator, through the real msgraph-sdk and azure-identity over TLS."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from bridge.config import GraphSourceConfig
from bridge.domain import FreeBusy, MailMessage
from bridge.sources import graph
from bridge.sources.base import AuthFailed, MailboxNotFound, SourceError, Throttled
from bridge.sources.graph import GraphSource, graph_source
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.conftest import emulator_credential, free_port, graph_source_for
from tests.sources.conformance import WINDOW, CalendarSourceContract, at


def _wire_time(value: datetime) -> dict[str, str]:
    return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


class GraphOutlook:
    """Adele editing her calendar in Outlook: changes go straight into the emulated tenant."""

    def __init__(self, emulator: GraphEmulator, user: str) -> None:
        self._emulator = emulator
        self._user = user

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
        payload: dict[str, Any] = {
            "subject": subject,
            "start": _wire_time(start),
            "end": _wire_time(end),
            "showAs": show_as.value,
            "isAllDay": all_day,
            "sensitivity": "private" if private else "normal",
        }
        if not organizer:
            payload["isOrganizer"] = False
            payload["organizer"] = {"emailAddress": {"name": "Someone Else", "address": "someone@fabrikam.com"}}
        if daily_until is not None:
            payload["recurrence"] = {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "endDate", "startDate": start.date().isoformat(), "endDate": daily_until.isoformat()},
            }
        return str(self._emulator.create_event_as_outlook(self._user, payload)["id"])

    def update(self, item_id: str, **fields: Any) -> None:
        payload: dict[str, Any] = {}
        for name, value in fields.items():
            if name in ("start", "end"):
                payload[name] = _wire_time(value)
            elif name == "show_as":
                payload["showAs"] = value.value
            else:
                payload[name] = value
        self._emulator.update_event_as_outlook(self._user, item_id, payload)

    def delete(self, item_id: str) -> None:
        self._emulator.delete_event_as_outlook(self._user, item_id)

    def cancel_meeting(self, item_id: str) -> None:
        # What the attendee's calendar shows once the organizer (in another tenant) cancelled: the copy stays,
        # marked cancelled. Organizers inside the tenant are test_graph_meetings.py's.
        subject = self._emulator.state.mailbox_for(self._user, None).get(item_id).event.props["subject"]
        payload = {"isCancelled": True, "subject": f"Canceled: {subject}"}
        self._emulator.update_event_as_outlook(self._user, item_id, payload)

    def respond(self, item_id: str, response: str) -> None:
        self._emulator.respond_as_outlook(self._user, item_id, response)


@pytest.fixture
def source(online_source: GraphSource) -> GraphSource:
    return online_source


@pytest.fixture
def mailbox(adele: DirectoryUser) -> str:
    return adele.user_principal_name


@pytest.fixture
def outlook(graph_emulator: GraphEmulator, mailbox: str) -> GraphOutlook:
    return GraphOutlook(graph_emulator, mailbox)


class TestGraphSourceContract(CalendarSourceContract):
    """The shared `CalendarSource` contract, against the Graph emulator."""


# --- what is particular to Graph -------------------------------------------------------------------------------


async def test_occurrence_stubs_cost_one_master_read_per_series(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Stand-up", at(1, 8), at(1, 9), daily_until=WINDOW.end.date())
    graph_emulator.clear_stats()

    result = await source.read_delta(mailbox, WINDOW, None)

    assert len(result.upserts) == 29
    assert all(a.subject == "Stand-up" for a in result.upserts)
    reads = [r for r in graph_emulator.stats(log_limit=100)["log"] if r["method"] == "GET" and "/events/" in r["path"]]
    assert len(reads) == 1


async def test_an_unchanged_series_is_not_read_again(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    series = outlook.create("Stand-up", at(1, 8), at(1, 9), daily_until=WINDOW.end.date())
    first = await source.read_delta(mailbox, WINDOW, None)
    outlook.update(series, subject="Daily stand-up")
    graph_emulator.clear_stats()

    second = await source.read_delta(mailbox, WINDOW, first.token)

    assert {a.subject for a in second.upserts} == {"Daily stand-up"}
    reads = [r for r in graph_emulator.stats(log_limit=100)["log"] if "/events/" in r["path"]]
    assert len(reads) == 1  # the master changed, so one read; the stubs all point at the same change key


async def test_empty_pages_with_a_next_link_are_followed(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    graph_emulator.empty_delta_pages(3, user=mailbox)

    result = await source.read_delta(mailbox, WINDOW, None)

    assert [a.subject for a in result.upserts] == ["Visit"]


@pytest.mark.parametrize("status", [410, 400])
async def test_an_expired_delta_token_restarts_the_round(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator, status: int
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    first = await source.read_delta(mailbox, WINDOW, None)
    graph_emulator.expire_delta_tokens(mailbox, status)

    again = await source.read_delta(mailbox, WINDOW, first.token)

    assert again.full_round
    assert [a.subject for a in again.upserts] == ["Visit"]


def _delta_statuses(emulator: GraphEmulator) -> list[int]:
    return [r["status"] for r in emulator.stats(log_limit=100)["log"] if "calendarView/delta" in r["path"]]


async def test_a_sync_state_lost_between_pages_of_a_first_round_restarts_it(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    graph_emulator.empty_delta_pages(2, user=mailbox)
    graph_emulator.expire_delta_tokens(mailbox, after_pages=1)
    graph_emulator.clear_stats()

    result = await source.read_delta(mailbox, WINDOW, None)

    assert result.full_round
    assert [a.subject for a in result.upserts] == ["Visit"]
    assert _delta_statuses(graph_emulator)[:2] == [200, 410]


@pytest.mark.parametrize("status", [410, 400])
async def test_a_sync_state_lost_between_pages_of_a_later_round_restarts_from_nothing(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator, status: int
) -> None:
    kept = outlook.create("Visit", at(1), at(1, 10))
    first = await source.read_delta(mailbox, WINDOW, None)
    outlook.update(kept, subject="Customer visit")
    outlook.create("New", at(2), at(2, 10))
    graph_emulator.empty_delta_pages(2, user=mailbox)
    graph_emulator.expire_delta_tokens(mailbox, status, after_pages=1)

    again = await source.read_delta(mailbox, WINDOW, first.token)

    assert again.full_round
    assert sorted(a.subject for a in again.upserts) == ["Customer visit", "New"]
    assert again.removed == ()


async def test_a_sync_state_lost_in_every_round_is_a_source_error_in_the_bridge_s_words(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    graph_emulator.empty_delta_pages(10, user=mailbox)
    graph_emulator.expire_delta_tokens(mailbox, after_pages=1, times=10)

    with pytest.raises(SourceError) as raised:
        await source.read_delta(mailbox, WINDOW, None)

    assert type(raised.value) is SourceError
    assert "lost the round's sync state 3 times" in str(raised.value)
    assert raised.value.code == "SyncStateNotFound"


async def test_throttling_waits_retry_after_and_then_succeeds(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    graph_emulator.throttle(2, user=mailbox, retry_after=1)
    graph_emulator.clear_stats()

    result = await source.read_delta(mailbox, WINDOW, None)

    assert [a.subject for a in result.upserts] == ["Visit"]
    log = [r for r in graph_emulator.stats(log_limit=100)["log"] if "calendarView" in r["path"]]
    assert [r["status"] for r in log[:3]] == [429, 429, 200]
    times = [datetime.fromisoformat(r["time"]) for r in log[:3]]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # each retry waited for Retry-After: 1


async def test_throttling_beyond_the_sdks_retries_raises_throttled(
    source: GraphSource, mailbox: str, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.throttle(10, user=mailbox, retry_after=1)

    with pytest.raises(Throttled) as raised:
        await source.read_delta(mailbox, WINDOW, None)
    assert raised.value.retry_after >= 1


async def test_no_more_than_four_requests_per_mailbox_are_in_flight(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    ids = [outlook.create(f"Item {n}", at(1 + n % 20), at(1 + n % 20, 10)) for n in range(12)]
    graph_emulator.set_latency(50)
    graph_emulator.clear_stats()

    read = await asyncio.gather(*(source.read_item(mailbox, item_id) for item_id in ids))

    assert all(item is not None for item in read)
    stats = graph_emulator.stats()
    assert max(stats["peakConcurrency"].values()) == 4
    assert all(r["status"] != 429 for r in stats["log"])


async def test_every_request_asks_for_immutable_ids_and_utc(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    outlook.create("Visit", at(1), at(1, 10))
    graph_emulator.clear_stats()

    await source.read_delta(mailbox, WINDOW, None)

    [delta] = [r for r in graph_emulator.stats(log_limit=100)["log"] if "calendarView" in r["path"]]
    prefer = " ".join(delta["prefer"])
    assert 'IdType="ImmutableId"' in prefer
    assert 'outlook.timezone="UTC"' in prefer


# -- time zones, 20 to a $batch ---------------------------------------------------------------------------------


def _users_in_zones(emulator: GraphEmulator, count: int) -> dict[str, str]:
    """`count` users, each having chosen a zone in Outlook (Windows ids, as Graph keeps them); their IANA names."""
    chosen = {}
    for n in range(count):
        address = f"zone{n:02d}@contoso.com"
        windows, iana = (("Pacific Standard Time", "America/Los_Angeles"), ("Tokyo Standard Time", "Asia/Tokyo"))[n % 2]
        emulator.add_user(address)
        emulator.state.mailbox_for(address, None).time_zone = windows
        chosen[address] = iana
    return chosen


def _batches(emulator: GraphEmulator) -> list[dict[str, Any]]:
    return [entry for entry in emulator.stats()["log"] if entry["route"] == "batch"]


async def test_the_zones_of_45_mailboxes_are_read_20_to_a_request(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    chosen = _users_in_zones(graph_emulator, 45)
    graph_emulator.clear_stats()

    zones = await source.read_time_zones(list(chosen))

    assert zones == chosen
    stats = graph_emulator.stats()
    assert {route: stats["byRoute"].get(route) for route in ("batch", "mailboxSettings")} == {
        "batch": 3,
        "mailboxSettings": 45,
    }
    # Each item was answered by the emulator's own mailboxSettings handler, and logged for its mailbox.
    items = [entry for entry in stats["log"] if entry["batchItem"]]
    assert {entry["user"] for entry in items} == set(chosen)


async def test_an_unknown_mailbox_in_a_batch_does_not_spoil_the_others(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    chosen = _users_in_zones(graph_emulator, 3)
    graph_emulator.clear_stats()

    zones = await source.read_time_zones(["zone00@contoso.com", "nobody@contoso.com", "zone02@contoso.com"])

    assert len(_batches(graph_emulator)) == 1
    assert (zones["zone00@contoso.com"], zones["zone02@contoso.com"]) == (
        chosen["zone00@contoso.com"],
        chosen["zone02@contoso.com"],
    )
    missing = zones["nobody@contoso.com"]
    assert isinstance(missing, MailboxNotFound)
    assert "nobody@contoso.com" in str(missing)


async def test_a_mailbox_throttled_within_a_batch_is_asked_again_after_its_retry_after(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    chosen = _users_in_zones(graph_emulator, 3)
    graph_emulator.throttle(1, user="zone01@contoso.com", route="mailboxSettings", retry_after=1)
    graph_emulator.clear_stats()

    started = time.monotonic()
    zones = await source.read_time_zones(list(chosen))

    assert zones == chosen
    assert time.monotonic() - started >= 0.9  # waited for Retry-After: 1
    assert len(_batches(graph_emulator)) == 1
    asked = [
        (entry["user"], entry["status"], entry["batchItem"])
        for entry in graph_emulator.stats()["log"]
        if entry["route"] == "mailboxSettings"
    ]
    # Only the throttled mailbox is asked again: alone, so as a request of its own.
    assert asked[3:] == [("zone01@contoso.com", 200, False)]
    assert ("zone01@contoso.com", 429, True) in asked[:3]
    assert graph_emulator.stats()["requestsBeforeRetryAfter"] == 0


async def test_a_mailbox_throttled_in_a_batch_beyond_the_retries_is_reported_throttled_alone(
    source: GraphSource, graph_emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = _users_in_zones(graph_emulator, 2)
    graph_emulator.throttle(10, user="zone01@contoso.com", route="mailboxSettings", retry_after=1)
    # Asked again alone, the request meets the SDK's own retries (3) too: the batch's one retry and those.
    monkeypatch.setattr(graph, "_BATCH_RETRIES", 1)

    zones = await source.read_time_zones(list(chosen))

    assert zones["zone00@contoso.com"] == chosen["zone00@contoso.com"]
    throttled = zones["zone01@contoso.com"]
    assert isinstance(throttled, Throttled)
    assert throttled.retry_after == 1
    assert len(_batches(graph_emulator)) == 1


async def test_a_failure_of_one_mailbox_in_a_batch_is_a_source_error_for_it_only(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    chosen = _users_in_zones(graph_emulator, 2)
    graph_emulator.fail(1, status=500, user="zone00@contoso.com", route="mailboxSettings", retry_after=None)

    zones = await source.read_time_zones(list(chosen))

    failed = zones["zone00@contoso.com"]
    assert isinstance(failed, SourceError)
    assert failed.status == 500
    assert zones["zone01@contoso.com"] == chosen["zone01@contoso.com"]


@pytest.mark.parametrize("status", [503, 504])
async def test_a_mailbox_unavailable_within_a_batch_is_asked_again_as_the_sdk_would(
    source: GraphSource, graph_emulator: GraphEmulator, status: int
) -> None:
    chosen = _users_in_zones(graph_emulator, 2)
    graph_emulator.fail(1, status=status, user="zone00@contoso.com", route="mailboxSettings", retry_after=1)
    graph_emulator.clear_stats()

    zones = await source.read_time_zones(list(chosen))

    assert zones == chosen
    asked = [
        (entry["user"], entry["status"], entry["batchItem"])
        for entry in graph_emulator.stats()["log"]
        if entry["route"] == "mailboxSettings"
    ]
    assert sorted(asked[:2]) == [("zone00@contoso.com", status, True), ("zone01@contoso.com", 200, True)]
    assert asked[2:] == [("zone00@contoso.com", 200, False)]


async def test_a_wrong_secret_is_an_auth_failure(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, mailbox: str
) -> None:
    wrong = graph_source_for(graph_emulator, tenant_app, secret="not-the-secret")
    try:
        with pytest.raises(AuthFailed):
            await wrong.read_delta(mailbox, WINDOW, None)
        report = await wrong.test_connection((mailbox,))
    finally:
        await wrong.close()
    assert not report.ok
    assert report.problems == (
        "Entra ID refused the app's credentials: AADSTS7000215: Invalid client secret provided. Ensure the secret"
        " being sent in the request is the client secret value, not the client secret ID, for a secret added to app"
        f" '{tenant_app.client_id}'. (sources.online.client_secret)",
    )


async def test_an_unknown_mailbox_is_reported(source: GraphSource) -> None:
    with pytest.raises(MailboxNotFound):
        await source.read_delta("nobody@contoso.com", WINDOW, None)
    report = await source.test_connection(("nobody@contoso.com",))
    assert "nobody@contoso.com" in report.problems[0]


async def test_subscribe_renew_list_and_remove(
    source: GraphSource, mailbox: str, graph_emulator: GraphEmulator, receiver: Any
) -> None:
    from bridge.domain import SubscriptionRequest

    expires = datetime.now(tz=WINDOW.start.tzinfo) + timedelta(days=2)
    created = await source.subscribe(
        SubscriptionRequest(mailbox, receiver.url, receiver.lifecycle_url, "state-1", expires)
    )
    renewed = await source.renew(created.subscription_id, mailbox, expires + timedelta(days=1))
    listed = await source.list_subscriptions()
    await source.unsubscribe(created.subscription_id)
    await source.unsubscribe(created.subscription_id)  # already gone: not an error

    assert renewed.expires_at > created.expires_at
    assert [(s.subscription_id, s.notification_url) for s in listed] == [(created.subscription_id, receiver.url)]
    assert listed[0].mailbox.lower() == mailbox.lower()
    assert graph_emulator.subscriptions() == []


async def test_send_mail_reaches_the_outbox(source: GraphSource, mailbox: str, graph_emulator: GraphEmulator) -> None:
    await source.send_mail(
        mailbox, MailMessage("Absence noted", "See you Monday.", ("boss@contoso.com",), cc=("hr@contoso.com",))
    )

    sent = graph_emulator.sent_mail()
    assert len(sent) == 1
    message = sent[0]["message"]
    assert message["subject"] == "Absence noted"
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == ["boss@contoso.com"]


async def test_a_server_failure_after_retries_is_unavailable(
    source: GraphSource, mailbox: str, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.fail(10, status=500, user=mailbox, retry_after=None)

    with pytest.raises(SourceError):
        await source.read_delta(mailbox, WINDOW, None)


def token_requests(emulator: GraphEmulator) -> int:
    return int(emulator.stats()["byRoute"].get("token", 0))


async def test_a_revoked_token_is_dropped_and_a_new_one_asked_for_once(
    source: GraphSource, mailbox: str, graph_emulator: GraphEmulator
) -> None:
    await source.read_delta(mailbox, WINDOW, None)
    before = token_requests(graph_emulator)
    graph_emulator.expire_tokens()

    # Several requests refused together still cost one new token.
    await asyncio.gather(*(source.read_delta(mailbox, WINDOW, None) for _ in range(3)))

    assert token_requests(graph_emulator) == before + 1
    statuses = [entry["status"] for entry in graph_emulator.stats(log_limit=20)["log"] if entry["route"] == "delta"]
    assert statuses.count(401) <= 3
    assert statuses[-1] == 200


class _CountingCredential(AsyncTokenCredential):
    """The app's real credential, counting what is asked of it; its tokens said to expire in `lifetime`."""

    def __init__(self, inner: AsyncTokenCredential, lifetime: timedelta) -> None:
        self.inner, self.lifetime, self.asked = inner, lifetime, 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked += 1
        token = await self.inner.get_token(*scopes, **kwargs)
        return AccessToken(token.token, int(time.time() + self.lifetime.total_seconds()))

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize(("lifetime", "asked"), [(timedelta(hours=1), 1), (timedelta(minutes=4), 3)])
async def test_a_token_is_asked_for_once_until_it_is_near_its_expiry(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, mailbox: str, lifetime: timedelta, asked: int
) -> None:
    credential = _CountingCredential(emulator_credential(graph_emulator, tenant_app), lifetime)
    source = GraphSource("online", credential, graph_url=graph_emulator.graph_url, ca_file=str(graph_emulator.ca_file))
    try:
        for _ in range(3):
            await source.read_time_zone(mailbox)
    finally:
        await source.close()

    # Within azure-identity's 5 minutes of refresh margin, it is asked every time (and decides about renewing).
    assert credential.asked == asked


async def test_idle_connections_are_checked_through_the_source_s_own_connections(
    source: GraphSource, mailbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    answer = graph._Connection.get_extra_info

    def spy(self: graph._Connection, info: str) -> Any:
        asked.append(info)
        return answer(self, info)

    monkeypatch.setattr(graph._Connection, "get_extra_info", spy)
    await asyncio.gather(*(source.read_time_zone(mailbox) for _ in range(3)))  # three connections
    await source.read_time_zone(mailbox)  # on one of them, the other two idle

    # httpx's pool replaced (it takes no network backend): an httpx that no longer uses it fails here.
    assert "is_readable" in asked


async def test_a_rotated_secret_is_an_auth_failure_after_one_new_token_request(
    source: GraphSource, mailbox: str, graph_emulator: GraphEmulator
) -> None:
    await source.read_delta(mailbox, WINDOW, None)
    before = token_requests(graph_emulator)
    graph_emulator.rotate_secret()

    with pytest.raises(AuthFailed, match=r"invalid_client|7000215"):
        await source.read_delta(mailbox, WINDOW, None)

    assert token_requests(graph_emulator) == before + 1


async def test_the_connection_test_names_missing_application_permissions(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, mailbox: str
) -> None:
    graph_emulator.grant(tenant_app.client_id, ["Calendars.Read", "User.Read.All"])
    source = graph_source_for(graph_emulator, tenant_app)
    try:
        report = await source.test_connection((mailbox,), sender=mailbox)
    finally:
        await source.close()

    assert report.problems == (
        "the app lacks the application permission Calendars.ReadWrite, Mail.Send (granted: Calendars.Read,"
        " User.Read.All); add it in Entra ID (API permissions, Microsoft Graph, application permissions) and grant"
        " admin consent",
    )
    assert report.passed == (f"{mailbox}: calendar readable (mail sender)",)


async def test_the_connection_test_passes_with_the_permissions_granted(source: GraphSource, mailbox: str) -> None:
    report = await source.test_connection((mailbox,), sender=mailbox)

    assert report.ok
    assert report.passed == (
        "token issued; application permissions Calendars.ReadWrite, Mail.Send granted",
        f"{mailbox}: calendar readable (mail sender)",
    )


async def test_the_connection_test_names_a_mailbox_an_access_policy_excludes(
    source: GraphSource, graph_emulator: GraphEmulator, tenant_app: AppRegistration, mailbox: str, bob: DirectoryUser
) -> None:
    graph_emulator.restrict_access(tenant_app.client_id, [mailbox])

    report = await source.test_connection((mailbox, bob.user_principal_name))

    assert report.problems == (
        f"{bob.user_principal_name}: an application access policy keeps the app out of this mailbox (Exchange Online"
        " PowerShell: Test-ApplicationAccessPolicy; add the mailbox to the policy's group)",
    )
    with pytest.raises(MailboxNotFound):  # the engine takes the policy's 403 as a mailbox it may not open
        await source.read_delta(bob.user_principal_name, WINDOW, None)


async def test_the_connection_test_tells_a_mailbox_without_exchange_online(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.add_user("onprem@contoso.com", has_mailbox=False)

    report = await source.test_connection(("onprem@contoso.com",))

    assert report.problems == (
        "onprem@contoso.com: has no Exchange Online mailbox (on-premises, inactive or soft-deleted: an ews source"
        " reaches it)",
    )


async def test_the_connection_test_says_which_setting_points_at_an_unreachable_graph(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, mailbox: str
) -> None:
    port = free_port()
    config = GraphSourceConfig(
        name="online",
        tenant_id=tenant_app.tenant_id,
        client_id=tenant_app.client_id,
        client_secret=tenant_app.client_secret,
        authority_host=f"https://127.0.0.1:{port}",
        graph_url=graph_emulator.graph_url,
        ca_file=graph_emulator.ca_file,
    )
    source = graph_source(config)
    try:
        report = await source.test_connection((mailbox,))
    finally:
        await source.close()

    assert report.unreachable == (f"connection refused by 127.0.0.1:{port} (sources.online.authority_host)",)


# -- requests made together travel 20 to a $batch -----------------------------------------------------------------


def _mailboxes_with_a_meeting(emulator: GraphEmulator, count: int) -> list[str]:
    """`count` mailboxes, each with one meeting named after it."""
    addresses = []
    for n in range(count):
        address = f"busy{n:02d}@contoso.com"
        emulator.add_user(address)
        emulator.create_event_as_outlook(
            address, {"subject": address, "start": _wire_time(at(2)), "end": _wire_time(at(2, 10)), "showAs": "busy"}
        )
        addresses.append(address)
    return addresses


def _asked(emulator: GraphEmulator, route: str) -> list[tuple[str, int, bool]]:
    """Who was asked on `route`, answered what, inside a batch or not, in the log's order."""
    return [(e["user"], e["status"], e["batchItem"]) for e in emulator.stats()["log"] if e["route"] == route]


async def test_delta_reads_of_many_mailboxes_at_once_travel_20_to_a_batch_each_caller_getting_its_own(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    mailboxes = _mailboxes_with_a_meeting(graph_emulator, 25)
    graph_emulator.clear_stats()

    results = await asyncio.gather(*(source.read_delta(mailbox, WINDOW, None) for mailbox in mailboxes))

    assert [[item.subject for item in result.upserts] for result in results] == [[m] for m in mailboxes]
    assert len(_batches(graph_emulator)) == 2  # 20 and 5
    assert {(user, status, inner) for user, status, inner in _asked(graph_emulator, "delta")} == {
        (mailbox, 200, True) for mailbox in mailboxes
    }
    # The next rounds start from each mailbox's own deltaLink (an absolute URL, relative inside the batch).
    again = await asyncio.gather(
        *(source.read_delta(m, WINDOW, r.token) for m, r in zip(mailboxes, results, strict=True))
    )
    assert all(not result.upserts and not result.full_round for result in again)
    assert len(_batches(graph_emulator)) == 4


async def test_a_lone_request_goes_out_as_it_is(source: GraphSource, graph_emulator: GraphEmulator) -> None:
    (mailbox,) = _mailboxes_with_a_meeting(graph_emulator, 1)
    graph_emulator.clear_stats()

    result = await source.read_delta(mailbox, WINDOW, None)

    assert [item.subject for item in result.upserts] == [mailbox]
    assert _batches(graph_emulator) == []
    assert _asked(graph_emulator, "delta") == [(mailbox, 200, False)]


async def test_subscriptions_made_at_once_travel_in_batches_and_are_each_validated(
    source: GraphSource, graph_emulator: GraphEmulator, receiver: Any
) -> None:
    from bridge.domain import SubscriptionRequest

    mailboxes = _mailboxes_with_a_meeting(graph_emulator, 21)
    expires = datetime.now(tz=WINDOW.start.tzinfo) + timedelta(days=2)
    graph_emulator.clear_stats()

    made = await asyncio.gather(
        *(
            source.subscribe(SubscriptionRequest(m, receiver.url, receiver.lifecycle_url, f"state-{m}", expires))
            for m in mailboxes
        )
    )
    renewed = await asyncio.gather(
        *(source.renew(s.subscription_id, s.mailbox, expires + timedelta(days=1)) for s in made)
    )

    assert [s.mailbox.lower() for s in made] == mailboxes
    assert len({s.subscription_id for s in made}) == 21
    assert [s.subscription_id for s in renewed] == [s.subscription_id for s in made]
    # Graph's handshake with the notification and the lifecycle URL, for each subscription.
    assert len(receiver.validations) == 2 * 21
    assert len(_batches(graph_emulator)) == 2  # 20 created, 20 renewed; the 21st of each went alone
    assert len(graph_emulator.subscriptions()) == 21


async def test_a_request_throttled_inside_a_batch_is_asked_again_alone(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    mailboxes = _mailboxes_with_a_meeting(graph_emulator, 3)
    graph_emulator.throttle(1, user=mailboxes[1], route="delta", retry_after=1)
    graph_emulator.clear_stats()

    results = await asyncio.gather(*(source.read_delta(mailbox, WINDOW, None) for mailbox in mailboxes))

    assert [[item.subject for item in result.upserts] for result in results] == [[m] for m in mailboxes]
    asked = _asked(graph_emulator, "delta")
    assert sorted(asked[:3]) == [(mailboxes[0], 200, True), (mailboxes[1], 429, True), (mailboxes[2], 200, True)]
    assert asked[3:] == [(mailboxes[1], 200, False)]
    assert graph_emulator.stats()["requestsBeforeRetryAfter"] == 0


async def test_a_lost_sync_state_inside_a_batch_restarts_only_its_mailbox_s_round(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    mailboxes = _mailboxes_with_a_meeting(graph_emulator, 4)
    first = await asyncio.gather(*(source.read_delta(mailbox, WINDOW, None) for mailbox in mailboxes))
    graph_emulator.expire_delta_tokens(mailboxes[2])

    again = await asyncio.gather(
        *(source.read_delta(m, WINDOW, r.token) for m, r in zip(mailboxes, first, strict=True))
    )

    assert [result.full_round for result in again] == [False, False, True, False]
    assert [item.subject for item in again[2].upserts] == [mailboxes[2]]


async def test_an_item_missing_inside_a_batch_is_missing_for_its_caller_only(
    source: GraphSource, mailbox: str, outlook: GraphOutlook, graph_emulator: GraphEmulator
) -> None:
    ids = [outlook.create(f"Item {n}", at(1 + n), at(1 + n, 10)) for n in range(3)]
    outlook.delete(ids[1])
    graph_emulator.clear_stats()

    read = await asyncio.gather(*(source.read_item(mailbox, item_id) for item_id in ids))

    assert [item.subject if item else None for item in read] == ["Item 0", None, "Item 2"]
    assert len(_batches(graph_emulator)) == 1


async def test_batches_keep_to_four_requests_per_mailbox_and_cause_no_throttling(
    source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    mailboxes = _mailboxes_with_a_meeting(graph_emulator, 3)
    ids = {m: [str(e["id"]) for e in graph_emulator.events(m)] * 6 for m in mailboxes}
    graph_emulator.set_latency(30)
    graph_emulator.clear_stats()

    read = await asyncio.gather(*(source.read_item(m, item_id) for m in mailboxes for item_id in ids[m]))

    assert all(item is not None for item in read)
    stats = graph_emulator.stats()
    assert stats["peakConcurrency"] == dict.fromkeys(mailboxes, 4)
    assert all(entry["status"] != 429 for entry in stats["log"])
    assert _batches(graph_emulator)
