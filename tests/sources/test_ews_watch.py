"""The EWS watcher against the EWS emulator: streaming (and pull) subscriptions through exchangelib over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bridge.sources.ews import EwsSource
from bridge.sources.ews_adapter import StreamingEvents
from bridge.sources.ews_watch import EwsWatcher
from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import (  # noqa: F401
    ALICE,
    BOB,
    SERVICE_PASSWORD,
    SERVICE_USER,
    ews_fixture,
    held_stream,
)
from tests.sources.conformance import WINDOW

pytestmark = pytest.mark.timeout(30)

GHOST = "ghost@corp.example"
DELEGATE_USER = "CORP\\svc-delegate"


class Changes:
    """What the watcher told the engine, in order, with a way to wait for a batch."""

    def __init__(self) -> None:
        self.batches: list[frozenset[str]] = []
        self._arrived = asyncio.Event()

    async def __call__(self, addresses: Collection[str]) -> None:
        self.batches.append(frozenset(addresses))
        self._arrived.set()

    async def wait_for(self, found: Callable[[list[frozenset[str]]], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not found(self.batches):
                self._arrived.clear()
                await self._arrived.wait()

    def count(self, batch: Collection[str]) -> int:
        return sum(1 for seen in self.batches if seen == frozenset(batch))


def _source(
    ews: EwsEmulator,
    *,
    username: str = SERVICE_USER,
    password: str = SERVICE_PASSWORD,
    pool_size: int = 4,
    impersonation: bool = True,
) -> EwsSource:
    return EwsSource(
        "onprem",
        service_endpoint=ews.url,
        username=username,
        password=password,
        auth_type="basic",
        pool_size=pool_size,
        impersonation=impersonation,
    )


@pytest.fixture
async def source(ews: EwsEmulator) -> AsyncIterator[EwsSource]:
    made = _source(ews)
    try:
        yield made
    finally:
        await made.close()


@asynccontextmanager
async def watching(
    source: EwsSource, mailboxes: Collection[str], changes: Changes, **options: Any
) -> AsyncIterator[asyncio.Event]:
    options.setdefault("connection_minutes", 1)
    options.setdefault("backoff_first", 0.05)
    watcher = EwsWatcher(source, **options)
    stop = asyncio.Event()

    async def listed() -> Collection[str]:
        return list(mailboxes)

    task = asyncio.create_task(watcher.run(listed, changes, stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def outlook_item(ews: EwsEmulator, address: str, subject: str = "Dentist") -> str:
    return ews.create_item_as_outlook(
        address, subject=subject, start=datetime(2026, 3, 2, 9), end=datetime(2026, 3, 2, 10), time_zone="UTC"
    )


def _operations(ews: EwsEmulator, name: str) -> list[dict[str, Any]]:
    return [entry for entry in ews.stats()["log"] if entry["operation"] == name]


def _stream_threads() -> Iterator[threading.Thread]:
    return (thread for thread in threading.enumerate() if thread.name.startswith("ews-stream-"))


async def test_a_change_in_outlook_reaches_on_changed_with_its_mailbox(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 60.0
    changes = Changes()
    async with watching(source, [ALICE, BOB], changes):
        await changes.wait_for(lambda batches: frozenset({ALICE, BOB}) in batches)
        await asyncio.sleep(0.2)  # the stream is open once the catch-up is done; give it its first frame
        started = time.monotonic()
        outlook_item(ews, BOB)
        await changes.wait_for(lambda batches: batches[-1] == frozenset({BOB}), within=2.0)
        delay = time.monotonic() - started

    assert delay < 1.0
    assert changes.batches == [frozenset({ALICE, BOB}), frozenset({BOB})]


async def test_every_connection_is_preceded_by_fresh_subscriptions_and_a_catch_up(
    source: EwsSource, ews: EwsEmulator
) -> None:
    ews.streams.minute = 0.3
    changes = Changes()
    async with watching(source, [ALICE, BOB], changes):
        await changes.wait_for(lambda batches: len(batches) >= 3)

    catch_ups = changes.count({ALICE, BOB})
    subscribes = [entry["mailbox"] for entry in _operations(ews, "Subscribe")]
    assert catch_ups == len(changes.batches) >= 3
    assert sorted(subscribes) == sorted([ALICE, BOB] * catch_ups)
    assert len(_operations(ews, "GetStreamingEvents")) in (catch_ups - 1, catch_ups)


async def test_a_connection_lasts_connection_minutes_then_is_reopened(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 0.25
    changes = Changes()
    async with watching(source, [ALICE], changes, connection_minutes=3):
        await changes.wait_for(lambda batches: len(batches) >= 3, within=5.0)

    starts = [entry["started"] for entry in _operations(ews, "GetStreamingEvents")]
    lasted = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) >= 2
    assert all(0.7 <= span < 1.5 for span in lasted)  # 3 "minutes" of 0.25 s, plus the resubscribe


async def test_a_cut_stream_is_reopened_and_what_changed_meanwhile_is_caught_up(
    source: EwsSource, ews: EwsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    ews.streams.minute = 60.0
    changes = Changes()
    caplog.set_level(logging.INFO, logger="bridge.sources.ews_watch")
    async with watching(source, [ALICE, BOB], changes, backoff_first=0.5):
        await changes.wait_for(lambda batches: len(batches) == 1)
        await asyncio.sleep(0.2)
        first_ids = {sub["id"] for sub in ews.subscriptions()}
        assert ews.cut_streaming_connections() == 1
        outlook_item(ews, ALICE)  # while no stream listens: only the catch-up can tell
        await changes.wait_for(lambda batches: len(batches) == 2, within=3.0)
        await asyncio.sleep(0.2)
        second_ids = {sub["id"] for sub in ews.subscriptions() if sub["connected"]}

    assert changes.batches == [frozenset({ALICE, BOB}), frozenset({ALICE, BOB})]
    assert len(second_ids) == 2
    assert not first_ids & second_ids
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "change notifications fail" in r.message]
    recoveries = [r for r in caplog.records if "change notifications work again" in r.message]
    assert (len(warnings), len(recoveries)) == (1, 1)


async def test_refresh_places_a_new_mailbox_in_a_listening_group_at_once(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 60.0
    changes = Changes()
    watched = [ALICE]
    watcher = EwsWatcher(source, connection_minutes=30, backoff_first=0.05)
    stop = asyncio.Event()

    async def listed() -> Collection[str]:
        return list(watched)

    task = asyncio.create_task(watcher.run(listed, changes, stop))
    try:
        await changes.wait_for(lambda batches: frozenset({ALICE}) in batches)
        await asyncio.sleep(0.2)  # listening
        watched.append(BOB)
        watcher.refresh()
        await changes.wait_for(lambda batches: frozenset({ALICE, BOB}) in batches, within=3.0)  # its catch-up
        outlook_item(ews, BOB)
        await changes.wait_for(lambda batches: batches[-1] == frozenset({BOB}), within=3.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)

    assert len({s["id"] for s in ews.subscriptions() if s["mailbox"] == BOB}) <= 1
    assert len(_operations(ews, "GetStreamingEvents")) == 2  # one connection, reopened once to take Bob


async def test_more_mailboxes_than_fit_a_connection_use_several_and_all_changes_arrive(
    source: EwsSource, ews: EwsEmulator
) -> None:
    ews.streams.minute = 60.0
    extra = [f"user{n}@corp.example" for n in range(3)]
    for address in extra:
        ews.add_mailbox(address)
    everyone = [ALICE, BOB, *extra]
    changes = Changes()
    async with watching(source, everyone, changes, per_connection=2):
        await changes.wait_for(lambda batches: set().union(*batches) == set(everyone))
        await asyncio.sleep(0.3)
        open_connections = [len(connection.subscriptions) for connection in ews.streams.open]
        caught_up = len(changes.batches)
        for address in everyone:
            outlook_item(ews, address)
        await changes.wait_for(lambda batches: set().union(*batches[caught_up:]) == set(everyone), within=3.0)

    assert sorted(open_connections) == [1, 2, 2]
    assert sorted(len(batch) for batch in changes.batches[:caught_up]) == [1, 2, 2]


def _extra_mailboxes(ews: EwsEmulator, count: int) -> list[str]:
    extra = [f"user{n}@corp.example" for n in range(count)]
    for address in extra:
        ews.add_mailbox(address)
    return extra


def _five_mailboxes(ews: EwsEmulator) -> list[str]:
    return [ALICE, BOB, *_extra_mailboxes(ews, 3)]


async def test_groups_beyond_the_stream_limit_poll_instead(ews: EwsEmulator) -> None:
    # Delegate access: every connection is charged to the service account's own HangingConnectionLimit.
    ews.streams.minute = 60.0
    ews.limits.hanging_connections = 1
    ews.add_service_account(DELEGATE_USER, SERVICE_PASSWORD, impersonation=False, full_access=True)
    everyone = _five_mailboxes(ews)
    source = _source(ews, username=DELEGATE_USER, impersonation=False)
    changes = Changes()
    try:
        async with watching(source, everyone, changes, per_connection=2, max_streams=1, pull_interval=0.1):
            await changes.wait_for(lambda batches: set().union(*batches) == set(everyone))
            await asyncio.sleep(0.3)
            streams = [len(connection.subscriptions) for connection in ews.streams.open]
            kinds = sorted(subscription["kind"] for subscription in ews.subscriptions())
            caught_up = len(changes.batches)
            for address in everyone:
                outlook_item(ews, address)
            await changes.wait_for(lambda batches: set().union(*batches[caught_up:]) == set(everyone), within=3.0)
    finally:
        await source.close()

    assert len(streams) == 1  # the server's limit on streaming connections is kept
    assert kinds.count("pull") == 5 - streams[0]
    assert ews.streams.refused == 0


async def test_with_impersonation_each_group_streams_on_its_anchors_budget(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 60.0
    ews.limits.hanging_connections = 1
    everyone = _five_mailboxes(ews)
    changes = Changes()
    async with watching(source, everyone, changes, per_connection=2, max_streams=1):
        await changes.wait_for(lambda batches: set().union(*batches) == set(everyone))
        await asyncio.sleep(0.3)
        streams = sorted(len(connection.subscriptions) for connection in ews.streams.open)
        kinds = {subscription["kind"] for subscription in ews.subscriptions()}

    assert streams == [1, 2, 2]
    assert kinds == {"streaming"}
    assert ews.streams.refused == 0


async def test_a_refused_stream_makes_its_group_poll_and_changes_still_arrive(
    source: EwsSource, ews: EwsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    ews.streams.minute = 60.0
    ews.limits.hanging_connections = 1
    everyone = [ALICE, BOB, *_extra_mailboxes(ews, 2)]
    changes = Changes()
    async with (
        aiohttp.ClientSession() as session,
        held_stream(ews, session, ALICE),  # another application holds the one connection ALICE's budget allows
        watching(source, everyone, changes, per_connection=2, pull_interval=0.1),
    ):
        await changes.wait_for(lambda batches: set().union(*batches) == set(everyone))
        await asyncio.sleep(0.5)
        kinds = Counter(subscription["kind"] for subscription in ews.subscriptions())
        caught_up = len(changes.batches)
        for address in everyone:
            outlook_item(ews, address)
        await changes.wait_for(lambda batches: set().union(*batches[caught_up:]) == set(everyone), within=3.0)

    refusals = [r for r in caplog.records if "refused a streaming connection" in r.message]
    assert kinds == {"pull": 2, "streaming": 3}  # ALICE's group polls; the other group and the holder stream
    assert ews.streams.refused == 1  # refused once, not retried in a loop
    assert len(refusals) == 1


async def test_a_mailbox_that_does_not_exist_is_left_out_and_the_others_are_watched(
    source: EwsSource, ews: EwsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    ews.streams.minute = 60.0
    changes = Changes()
    async with watching(source, [GHOST, ALICE, BOB], changes):
        await changes.wait_for(lambda batches: len(batches) == 1)
        await asyncio.sleep(0.2)
        outlook_item(ews, ALICE)
        await changes.wait_for(lambda batches: len(batches) == 2, within=2.0)

    assert changes.batches == [frozenset({ALICE, BOB}), frozenset({ALICE})]
    assert any(GHOST in r.message and "left out" in r.message for r in caplog.records)


@pytest.mark.parametrize(("auth_backoff", "most"), [(0.1, 12), (300.0, 1)])
async def test_a_refused_service_account_is_retried_with_back_off(
    ews: EwsEmulator, auth_backoff: float, most: int
) -> None:
    source = _source(ews, password="wrong")
    changes = Changes()
    try:
        async with watching(
            source, [ALICE], changes, backoff_first=0.1, backoff_max=0.2, auth_backoff_first=auth_backoff
        ):
            await asyncio.sleep(1.0)
    finally:
        await source.close()

    attempts = [entry for entry in ews.stats()["log"] if entry["status"] == 401]
    assert changes.batches == []
    # Retried with pauses between the attempts; at the default pace (5 minutes) not again within the second.
    assert min(most, 3) <= len(attempts) <= most


async def test_stop_ends_every_connection_promptly(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 60.0  # the server would hold each connection for a minute per "minute"
    ews.add_mailbox("carol@corp.example")
    changes = Changes()
    watcher = EwsWatcher(source, per_connection=1, backoff_first=0.05)
    stop = asyncio.Event()

    async def listed() -> Collection[str]:
        return [ALICE, BOB, "carol@corp.example"]

    task = asyncio.create_task(watcher.run(listed, changes, stop))
    await changes.wait_for(lambda batches: len(batches) == 3)
    await asyncio.sleep(0.3)
    assert len(ews.streams.open) == 3
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    took = time.monotonic() - started
    await asyncio.sleep(0.1)  # the emulator notices the closed connections

    assert took < 1.0
    assert not ews.streams.open
    assert ews.subscriptions() == []
    assert not list(_stream_threads())


async def test_pull_mode_delivers_changes(source: EwsSource, ews: EwsEmulator) -> None:
    changes = Changes()
    async with watching(source, [ALICE, BOB], changes, mode="pull", pull_interval=0.1):
        await changes.wait_for(lambda batches: len(batches) == 1)
        outlook_item(ews, ALICE)
        await changes.wait_for(lambda batches: len(batches) == 2, within=2.0)

    assert changes.batches == [frozenset({ALICE, BOB}), frozenset({ALICE})]
    assert {entry["mailbox"] for entry in _operations(ews, "GetEvents")} == {ALICE, BOB}
    assert not _operations(ews, "GetStreamingEvents")


async def test_the_event_loop_is_never_blocked_while_streams_run(source: EwsSource, ews: EwsEmulator) -> None:
    ews.streams.minute = 0.3  # connections close and reopen during the measurement
    extra = [f"user{n}@corp.example" for n in range(4)]
    for address in extra:
        ews.add_mailbox(address)
    lags: list[float] = []

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    changes = Changes()
    ticker = asyncio.create_task(tick())
    try:
        async with watching(source, [ALICE, BOB, *extra], changes, per_connection=2):
            for round_ in range(10):
                await asyncio.sleep(0.15)
                outlook_item(ews, ALICE, f"Round {round_}")
    finally:
        ticker.cancel()

    assert len(lags) > 50
    assert max(lags) < 0.1


async def test_streams_get_connections_of_their_own_in_the_pool(ews: EwsEmulator) -> None:
    ews.streams.minute = 60.0
    ews.add_mailbox("carol@corp.example")
    mailboxes = [ALICE, BOB, "carol@corp.example"]
    source = _source(ews, pool_size=2)  # fewer pooled connections than streams, were there no room made for them
    changes = Changes()
    try:
        async with watching(source, mailboxes, changes, per_connection=1):
            await changes.wait_for(lambda batches: len(batches) == 3)
            await asyncio.sleep(0.3)
            streams = len(ews.streams.open)
            reads = [source.read_delta(address, WINDOW, None) for address in mailboxes * 2]
            results = await asyncio.wait_for(asyncio.gather(*reads), 5)
    finally:
        await source.close()

    assert streams == 3
    assert len(results) == 6


async def test_a_stream_interrupted_before_its_response_came_ends_once_it_comes(
    source: EwsSource, ews: EwsEmulator
) -> None:
    # Stopping interrupts the stream while its request may still be on its way (a loaded machine): the interrupt
    # must not be lost, or the read waits for the connection's end and keeps the server's request open.
    ews.streams.minute = 60.0  # the server would hold the connection for a minute
    account = source.account(ALICE)
    subscription_id = await asyncio.to_thread(lambda: account.calendar.subscribe_to_streaming())
    service = StreamingEvents(account=account, on_frame=lambda: None)
    service.interrupt()

    def read() -> None:
        with contextlib.suppress(Exception):  # the cut stream may end in an error: only its ending matters
            list(service.call(subscription_ids=[subscription_id], connection_timeout=1))

    started = time.monotonic()
    await asyncio.wait_for(asyncio.to_thread(read), 20)

    assert time.monotonic() - started < 5
