"""Delivery of the outbox to the workforce system: over real HTTP to the workforce emulator, on both backends."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bridge.config import WorkforceConfig
from bridge.delivery import (
    DeliveryTiming,
    DeliveryWorker,
    claim_due,
    message_id,
    record_delivered,
    retry_delay,
    sign,
    webhook_body,
)
from bridge.domain import ChangeType, FreeBusy, PresenceEntry
from bridge.errors import UserError
from bridge.store import Database, MailboxRow, OutboxRow
from bridge.store.outbox import add_changes, changes_after
from emulators.workforce import WorkforceReceiver
from tests.conftest import OTHER_SECRET, WORKFORCE_SECRET, DatabaseUrl

FAST = DeliveryTiming(
    lease=timedelta(seconds=5),
    poll=timedelta(milliseconds=50),
    timeout=timedelta(seconds=2),
    backoff_first=timedelta(milliseconds=20),
    backoff_max=timedelta(milliseconds=200),
)
OCCURRED = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


class Clock:
    """A clock that stands still until told to move; starts at the real now, so rows written before are due."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def entry(number: int, subject: str | None = "Customer visit") -> PresenceEntry:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC) + timedelta(hours=number)
    return PresenceEntry(
        item_id=f"AAMkAGI1AAAoZDP{number}=",
        template="meeting",
        free_busy=FreeBusy.BUSY,
        start=start,
        end=start + timedelta(minutes=90),
        all_day=False,
        subject=subject,
    )


def emit(db: Database, address: str, count: int, change_type: ChangeType = ChangeType.CREATED) -> list[dict[str, Any]]:
    """Commit `count` changes for `address` (registered on first use) as the sync engine would; their payloads."""
    with db.session() as session:
        mailbox = session.exec(select(MailboxRow).where(MailboxRow.address == address)).first()
        if mailbox is None:
            mailbox = MailboxRow(address=address, workforce_id=f"E-{address.split('@')[0]}", source="online")
            session.add(mailbox)
            session.flush()
        rows = add_changes(session, mailbox, [(change_type, entry(n)) for n in range(count)], OCCURRED)
        return [row.payload for row in rows]


def outbox(db: Database) -> list[OutboxRow]:
    with db.session() as session:
        return list(session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all())


def mailbox_row(db: Database, address: str) -> MailboxRow:
    with db.session() as session:
        return session.exec(select(MailboxRow).where(MailboxRow.address == address)).one()


def sequences(changes: list[dict[str, Any]], address: str) -> list[int]:
    return [change["sequence"] for change in changes if change["mailbox"] == address]


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[asyncio.Event]:
    """The worker's `run` loop in the background; leaving the block stops it the graceful way."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


Workers = Callable[..., DeliveryWorker]


@pytest.fixture
async def workers(db: Database, workforce: WorkforceReceiver) -> AsyncIterator[Workers]:
    """Makes delivery workers for the workforce (owner "a" unless told), closing them afterwards."""
    made: list[DeliveryWorker] = []

    def make(
        *,
        owner: str = "a",
        database: Database | None = None,
        secret: str = WORKFORCE_SECRET,
        batch_size: int = WorkforceConfig().batch_size,
        **options: Any,
    ) -> DeliveryWorker:
        options.setdefault("timing", FAST)
        config = WorkforceConfig(url=workforce.url, signing_secret=secret, batch_size=batch_size)
        worker = DeliveryWorker(database or db, config, owner=owner, **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.close()


@pytest.fixture
def second_db(database_url: DatabaseUrl, db: Database) -> Iterator[Database]:
    """Another instance's handle on the same database (`db` has upgraded it)."""
    database = Database(database_url.url, schema=database_url.schema)
    try:
        yield database
    finally:
        database.close()


# -- the wire format ---------------------------------------------------------------------------------------


def test_the_signature_matches_the_standard_webhooks_test_vector() -> None:
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_one_change_is_sent_under_its_own_id() -> None:
    assert message_id(["5f1c7e0a-3b9d-4c47-9a7e-2f6d3c1b8e90"]) == "5f1c7e0a-3b9d-4c47-9a7e-2f6d3c1b8e90"


def test_a_batch_id_is_derived_from_its_change_ids() -> None:
    batch = ["id-1", "id-2", "id-3"]

    assert message_id(batch) == message_id(list(batch))
    assert message_id(batch) not in (message_id(["id-1", "id-2"]), message_id(["id-2", "id-1", "id-3"]))


def test_the_body_is_made_of_the_changes_texts_as_they_are() -> None:
    changes = ['{"id": "c-1", "sequence": 1}', '{"id":"c-2","appointment":{"subject":"Müller ✓"}}']

    body = webhook_body(changes)

    assert (
        body == '{"changes":[{"id": "c-1", "sequence": 1},{"id":"c-2","appointment":{"subject":"Müller ✓"}}]}'.encode()
    )
    assert json.loads(body) == {"changes": [json.loads(change) for change in changes]}


def test_retry_delay_doubles_from_the_first_step_up_to_the_maximum() -> None:
    timing = DeliveryTiming(backoff_first=timedelta(seconds=1), backoff_max=timedelta(minutes=5))

    steps = [retry_delay(attempts, timing, jitter=1.0) for attempts in (1, 2, 3, 9, 10, 1000)]

    assert steps == [timedelta(seconds=s) for s in (1, 2, 4, 256, 300, 300)]


def test_jitter_never_retries_sooner_than_half_the_step() -> None:
    timing = DeliveryTiming(backoff_first=timedelta(seconds=1))

    assert retry_delay(3, timing, jitter=0.0) == timedelta(seconds=2)


def test_a_timeout_as_long_as_the_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than the lease"):
        DeliveryTiming(lease=timedelta(seconds=10), timeout=timedelta(seconds=10))


def test_add_changes_writes_the_documented_change_object(db: Database) -> None:
    with db.session() as session:
        mailbox = MailboxRow(
            address="Adele@Contoso.com", workforce_id="E1001", source="online", time_zone="Europe/Berlin"
        )
        session.add(mailbox)
        session.flush()
        first, second = add_changes(
            session, mailbox, [(ChangeType.CREATED, entry(0)), (ChangeType.DELETED, entry(1, subject=None))], OCCURRED
        )

    assert first.payload == {
        "id": first.change_id,
        "type": "appointment.created",
        "sequence": 1,
        "occurred_at": "2026-11-23T06:00:00Z",
        "mailbox": "adele@contoso.com",
        "workforce_id": "E1001",
        "time_zone": "Europe/Berlin",
        "appointment": {
            "id": "AAMkAGI1AAAoZDP0=",
            "template": "meeting",
            "free_busy": "busy",
            "start": "2026-11-24T09:00:00Z",
            "end": "2026-11-24T10:30:00Z",
            "all_day": False,
            "subject": "Customer visit",
        },
    }
    assert (second.sequence, second.change_type) == (2, ChangeType.DELETED)
    assert "subject" not in second.payload["appointment"]
    assert mailbox.next_sequence == 3


# -- delivering --------------------------------------------------------------------------------------------


async def test_a_change_arrives_signed_and_verified(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    [sent] = emit(db, "adele@contoso.com", 1)

    delivered = await workers().deliver_once()

    assert delivered == 1
    assert workforce.changes == [sent]
    assert workforce.stats()["byStatus"] == {"200": 1}


async def test_a_delivered_change_is_marked_with_its_attempt(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)

    await workers().deliver_once()

    [row] = outbox(db)
    assert row.delivered_at is not None
    assert (row.attempts, row.last_error) == (1, None)


async def test_requests_are_json_from_the_bridge(db: Database, workforce: WorkforceReceiver, workers: Workers) -> None:
    emit(db, "adele@contoso.com", 1)

    await workers().deliver_once()

    [request] = workforce.requests
    assert request["contentType"] == "application/json"
    assert request["userAgent"].startswith("presence-bridge/")


async def test_a_rejected_signature_keeps_the_change_for_later(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)

    delivered = await workers(secret=OTHER_SECRET).deliver_once()

    [row] = outbox(db)
    assert delivered == 0
    assert workforce.changes == []
    assert row.delivered_at is None
    assert row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("answered 401")


async def test_changes_go_in_batches_of_at_most_batch_size(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 5)

    delivered = await workers(batch_size=2).deliver_once()

    assert delivered == 5
    assert [request["changes"] for request in workforce.requests] == [2, 2, 1]
    assert sequences(workforce.changes, "adele@contoso.com") == [1, 2, 3, 4, 5]


async def test_a_first_sync_of_a_mailbox_goes_in_one_request(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 40)

    delivered = await workers().deliver_once()

    assert delivered == 40
    assert [request["changes"] for request in workforce.requests] == [40]
    assert sequences(workforce.changes, "adele@contoso.com") == list(range(1, 41))


async def test_a_batch_holds_the_changes_of_one_mailbox_only(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 2)
    emit(db, "bob@contoso.com", 2)

    await workers().deliver_once()

    assert sorted(request["mailboxes"] for request in workforce.requests) == [
        ["adele@contoso.com"],
        ["bob@contoso.com"],
    ]


async def test_mailboxes_are_delivered_side_by_side_each_in_order(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    addresses = [f"person{n}@contoso.com" for n in range(6)]
    for address in addresses:
        emit(db, address, 6)
    workforce.slow(50)

    delivered = await workers(batch_size=2, concurrency=6).deliver_once()

    assert delivered == 36
    assert all(sequences(workforce.changes, address) == [1, 2, 3, 4, 5, 6] for address in addresses)
    assert workforce.anomalies == []
    assert workforce.stats()["overlaps"] == 0
    assert workforce.stats()["peakInFlight"] > 1


async def test_mailboxes_claimed_together_are_recorded_together_and_one_refused_holds_back_only_its_own(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    """Six mailboxes claimed in one claim, their batches answered at about the same time: the accepted ones are
    recorded a few to a transaction, the one the receiver refuses waits for its back-off, and each mailbox's changes
    arrive in order."""
    addresses = [f"person{n}@contoso.com" for n in range(6)]
    for address in addresses:
        emit(db, address, 3)
    workforce.slow(100)
    workforce.fail(status=500, count=1)
    recordings: list[int] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if statement.startswith("UPDATE outbox SET delivered_at"):
            recordings.append(len(parameters) if many else 1)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        delivered = await workers(batch_size=2, concurrency=6).deliver_once()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)

    [refused] = [address for address in addresses if not sequences(workforce.changes, address)]
    accepted = [address for address in addresses if address != refused]
    assert delivered == 15
    assert all(sequences(workforce.changes, address) == [1, 2, 3] for address in accepted)
    assert sum(recordings) == 10  # two batches for each of the five mailboxes accepted
    assert len(recordings) < 10  # in fewer transactions
    assert max(recordings) > 1
    rows = outbox(db)
    refused_id = mailbox_row(db, refused).id
    assert all(row.delivered_at is not None for row in rows if row.mailbox_id != refused_id)
    held = [row for row in rows if row.mailbox_id == refused_id]
    assert [(row.delivered_at, row.attempts) for row in held] == [(None, 1), (None, 1), (None, 0)]  # its first batch
    assert held[0].last_error is not None
    assert held[0].last_error.startswith("answered 500")
    assert [mailbox_row(db, address).delivered_sequence for address in accepted] == [3] * 5
    assert all(mailbox_row(db, address).delivery_owner is None for address in addresses)
    assert workforce.anomalies == []
    assert workforce.stats()["overlaps"] == 0


async def test_a_change_goes_as_the_text_it_is_kept_as(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    """The body is made of the stored changes' JSON text, not decoded and encoded again: what arrives is what was
    stored, characters beyond ASCII included, under the webhook-id of the changes' ids."""
    with db.session() as session:
        mailbox = MailboxRow(address="zoë@contoso.com", workforce_id="E-ß", source="online")
        session.add(mailbox)
        session.flush()
        rows = add_changes(
            session,
            mailbox,
            [(ChangeType.CREATED, entry(n, subject=f"Kundenbesuch – Müller {n} ✓")) for n in range(2)],
            OCCURRED,
        )
        emitted = [row.payload for row in rows]

    assert await workers().deliver_once() == 2

    assert workforce.changes == emitted
    [request] = workforce.requests
    assert request["webhookId"] == message_id([change["id"] for change in emitted])
    assert workforce.anomalies == []


async def test_a_failed_batch_waits_for_its_backoff(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 2)
    workforce.fail(status=500, count=1)
    clock = Clock()
    worker = workers(clock=clock)

    failed = await worker.deliver_once()
    too_soon = await worker.deliver_once()
    clock.advance(FAST.backoff_max)
    after = await worker.deliver_once()

    assert (failed, too_soon, after) == (0, 0, 2)
    assert len(workforce.requests) == 2


async def test_a_failed_attempt_is_recorded_on_its_changes(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 2)
    workforce.fail(status=503, count=1)
    clock = Clock()

    await workers(clock=clock).deliver_once()

    for row in outbox(db):
        assert row.attempts == 1
        assert row.next_attempt_at > clock.now
        assert row.last_error is not None
        assert "503" in row.last_error


async def test_a_mailbox_backing_off_holds_back_its_later_changes(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)
    workforce.fail(status=500, count=1)
    clock = Clock()
    worker = workers(clock=clock, timing=DeliveryTiming(backoff_first=timedelta(minutes=1)))
    await worker.deliver_once()

    emit(db, "adele@contoso.com", 1)
    clock.advance(timedelta(seconds=1))  # the new change is due; the failed one waits a minute
    held_back = await worker.deliver_once()

    assert held_back == 0
    assert workforce.changes == []


async def test_a_mailbox_backing_off_does_not_hold_back_the_others(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)
    emit(db, "bob@contoso.com", 1)
    workforce.fail(status=500, count=1)
    clock = Clock()
    worker = workers(clock=clock, concurrency=1)
    await worker.deliver_once()  # the longest waiting mailbox first: Adele's, which fails

    delivered = await worker.deliver_once()

    assert delivered == 1
    assert [change["mailbox"] for change in workforce.changes] == ["bob@contoso.com"]


def refuse_recording(db: Database, address: str) -> None:
    """Have the database refuse to mark `address`'s changes delivered (a trigger): a real fault inside the
    bridge's recording of an accepted batch, which nothing but this mailbox's recording runs into."""
    mailbox_id = mailbox_row(db, address).id
    marked = f"NEW.mailbox_id = {mailbox_id} AND NEW.delivered_at IS NOT NULL"
    with db.session() as session:
        if db.backend == "sqlite":
            session.execute(
                sa.text(
                    f"CREATE TRIGGER refuse_recording BEFORE UPDATE ON outbox WHEN {marked}"
                    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        else:
            session.execute(
                sa.text(
                    "CREATE FUNCTION refuse_recording() RETURNS trigger LANGUAGE plpgsql"
                    " AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
                )
            )
            session.execute(
                sa.text(
                    f"CREATE TRIGGER refuse_recording BEFORE UPDATE ON outbox FOR EACH ROW WHEN ({marked})"
                    " EXECUTE FUNCTION refuse_recording()"
                )
            )


async def test_a_batch_the_database_refuses_to_record_holds_back_its_mailbox_only(
    db: Database, workforce: WorkforceReceiver, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """The unexpected-error branch, reached by a real fault: the database refuses to record one mailbox's accepted
    batch. Batches accepted together are recorded together; refused, each alone: that mailbox backs off with one
    traceback in the log (its changes kept, to be sent again), the other mailbox's are recorded and keep going."""
    emit(db, "adele@contoso.com", 1)
    emit(db, "bob@contoso.com", 1)
    refuse_recording(db, "adele@contoso.com")
    adele_before = outbox(db)[0]
    caplog.set_level(logging.WARNING, logger="bridge.delivery")
    worker = workers()

    async with running(worker):
        worker.notify()
        await workforce.wait_for(2)
        await asyncio.sleep(0.5)  # Adele's back-off (20 to 200 ms) runs out a few times meanwhile
        emit(db, "bob@contoso.com", 1)
        worker.notify()
        await wait_until(lambda: sequences(workforce.changes, "bob@contoso.com") == [1, 2])

    adele, bob_first, bob_second = outbox(db)
    assert (adele.delivered_at, adele.next_attempt_at > adele_before.next_attempt_at) == (None, True)
    assert None not in (bob_first.delivered_at, bob_second.delivered_at)
    assert mailbox_row(db, "adele@contoso.com").delivery_owner is None  # its lease given back
    assert mailbox_row(db, "bob@contoso.com").delivered_sequence == 2
    logged = [record for record in caplog.records if record.name == "bridge.delivery"]
    assert (logged[0].levelno, logged[0].exc_info is not None) == (logging.ERROR, True)
    adele_id = mailbox_row(db, "adele@contoso.com").id
    assert all(
        f"mailbox {adele_id} failed unexpectedly" in record.getMessage()
        and "refused by the test" in record.getMessage()
        for record in logged
    )


async def test_a_receiver_too_slow_to_answer_is_tried_again(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)
    workforce.slow(1000, count=1)
    clock = Clock()
    worker = workers(clock=clock, timing=DeliveryTiming(timeout=timedelta(milliseconds=200)))

    timed_out = await worker.deliver_once()
    clock.advance(timedelta(minutes=5))
    retried = await worker.deliver_once()

    [row] = outbox(db)
    assert (timed_out, retried) == (0, 1)
    assert row.attempts == 2
    assert row.last_error == "did not answer within 0.2 s"


async def test_an_unreachable_receiver_is_an_attempt_like_any_other(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)
    worker = workers()
    await workforce.stop()

    delivered = await worker.deliver_once()

    [row] = outbox(db)
    assert delivered == 0
    assert row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("unreachable")


async def test_a_receiver_down_for_a_while_gets_everything_in_order_once_back(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    workforce.fail(status=500)
    worker = workers(batch_size=3)
    async with running(worker):
        emit(db, "adele@contoso.com", 4)
        emit(db, "bob@contoso.com", 4)
        worker.notify()
        await wait_until(lambda: len(workforce.requests) >= 6)  # each mailbox's first batch failed three times
        assert workforce.changes == []

        workforce.recover()
        changes = await workforce.wait_for(8)

    assert sequences(changes, "adele@contoso.com") == sequences(changes, "bob@contoso.com") == [1, 2, 3, 4]
    assert workforce.anomalies == []
    rows = outbox(db)
    assert all(row.delivered_at is not None for row in rows)
    first_batches = [row for row in rows if row.sequence <= 3]
    assert all(row.attempts >= 4 for row in first_batches)
    assert {row.last_error for row in first_batches} == {
        'answered 500 Internal Server Error: {"error": "failing on purpose"}'
    }


async def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    db: Database, workforce: WorkforceReceiver, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.delivery")
    workforce.fail(status=503)
    worker = workers()
    async with running(worker):
        emit(db, "adele@contoso.com", 1)
        worker.notify()
        await wait_until(lambda: outbox(db)[0].attempts >= 4)
        workforce.recover()
        await workforce.wait_for(1)

    messages = [record.getMessage() for record in caplog.records if record.name == "bridge.delivery"]
    assert len(messages) == 2
    assert "answered 503" in messages[0]
    assert "accepts changes again" in messages[1]


async def test_notify_wakes_the_worker_before_its_poll(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    worker = workers(timing=DeliveryTiming(poll=timedelta(minutes=5)))
    async with running(worker):
        await asyncio.sleep(0.1)  # let the first pass find nothing and go to sleep
        [sent] = emit(db, "adele@contoso.com", 1)
        worker.notify()

        assert await workforce.wait_for(1, within=5) == [sent]


async def test_stopping_lets_the_request_in_flight_finish_and_records_it(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    workforce.slow(300)
    worker = workers(batch_size=1)
    async with running(worker) as stop:
        emit(db, "adele@contoso.com", 1)
        emit(db, "adele@contoso.com", 1)
        worker.notify()
        await wait_until(lambda: workforce.stats()["inFlight"] == 1)
        stop.set()

    first, second = outbox(db)
    assert first.delivered_at is not None
    assert second.delivered_at is None  # not sent once stopping: the next instance to claim the mailbox sends it
    assert mailbox_row(db, "adele@contoso.com").delivery_owner is None


async def test_without_a_url_nothing_is_sent(db: Database, workforce: WorkforceReceiver) -> None:
    emit(db, "adele@contoso.com", 1)
    worker = DeliveryWorker(db, WorkforceConfig(), owner="a", timing=FAST)

    assert await worker.deliver_once() == 0
    async with running(worker):
        await asyncio.sleep(0.1)

    assert workforce.requests == []


def test_a_url_without_a_signing_secret_is_refused(db: Database) -> None:
    with pytest.raises(UserError, match="signing_secret"):
        DeliveryWorker(db, WorkforceConfig(url="http://127.0.0.1:9/hooks"), owner="a")


async def test_a_change_committed_while_the_last_batch_is_in_flight_follows_it(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    """The mailbox is released after a short batch without reading on: the change committed meanwhile leaves it
    due, and the worker claims it again as soon as the batch is done, not at its next poll."""
    workforce.slow(300, count=1)
    worker = workers(batch_size=5, timing=DeliveryTiming(poll=timedelta(minutes=5)))
    async with running(worker):
        await asyncio.sleep(0.1)  # let the first pass find nothing and go to sleep
        emit(db, "adele@contoso.com", 2)
        worker.notify()
        await wait_until(lambda: workforce.stats()["inFlight"] == 1)
        emit(db, "adele@contoso.com", 1)
        worker.notify()  # while the mailbox is still this worker's: the claim passes it over

        changes = await workforce.wait_for(3, within=5)

    assert sequences(changes, "adele@contoso.com") == [1, 2, 3]
    assert [request["changes"] for request in workforce.requests] == [2, 1]
    assert workforce.stats()["overlaps"] == 0


async def test_changes_pruned_before_delivery_leave_their_mailbox_caught_up(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    """Without a webhook, retention prunes changes that were never delivered: a webhook configured later sends
    what is left, and the mailbox does not stay due for changes that are gone."""
    emit(db, "adele@contoso.com", 2)
    with db.session() as session:
        session.execute(sa.delete(OutboxRow))
    worker = workers()

    assert await worker.deliver_once() == 0
    assert mailbox_row(db, "adele@contoso.com").delivered_sequence == 2

    [sent] = emit(db, "adele@contoso.com", 1)
    assert await worker.deliver_once() == 1
    assert workforce.changes == [sent]


def test_a_claim_hands_out_each_mailbox_with_its_first_batch(db: Database) -> None:
    emit(db, "adele@contoso.com", 3)
    emit(db, "bob@contoso.com", 1)
    now = datetime.now(UTC)
    until = now + timedelta(seconds=30)

    with db.session() as session:
        claimed = claim_due(session, owner="a", now=now, until=until, limit=8, exclude=set(), batch_size=2)
    with db.session() as session:
        again = claim_due(session, owner="b", now=now, until=until, limit=8, exclude=set(), batch_size=2)

    adele, bob = mailbox_row(db, "adele@contoso.com"), mailbox_row(db, "bob@contoso.com")
    assert [
        (mailbox_id, [json.loads(c)["sequence"] for c in batch.changes], batch.full) for mailbox_id, batch in claimed
    ] == [
        (adele.id, [1, 2], True),
        (bob.id, [1], False),
    ]
    assert (adele.delivery_owner, bob.delivery_owner) == ("a", "a")
    assert again == []  # leased to "a"


def test_batches_are_recorded_together_with_the_claim_for_the_places_they_free(db: Database) -> None:
    """One transaction: each batch marked delivered with its mailbox's next batch (or its lease given back), then
    the mailboxes due claimed; a mailbox still delivering is left out of the claim."""
    emit(db, "adele@contoso.com", 3)
    emit(db, "bob@contoso.com", 1)
    emit(db, "carol@contoso.com", 2)
    now = datetime.now(UTC)
    until = now + timedelta(seconds=30)
    with db.session() as session:
        claimed = claim_due(session, owner="a", now=now, until=until, limit=2, exclude=set(), batch_size=2)
    adele, bob, carol = (mailbox_row(db, f"{name}@contoso.com") for name in ("adele", "bob", "carol"))

    with db.session() as session:
        following, claimed_after = record_delivered(
            session,
            delivered=claimed,
            owner="a",
            now=now,
            until=until,
            batch_size=2,
            claim=8,
            exclude={adele.id},
        )

    assert [[json.loads(c)["sequence"] for c in batch.changes] if batch else None for batch in following] == [[3], None]
    assert [
        (mailbox_id, [json.loads(c)["sequence"] for c in batch.changes]) for mailbox_id, batch in claimed_after
    ] == [(carol.id, [1, 2])]
    assert [(row.mailbox_id, row.sequence) for row in outbox(db) if row.delivered_at is not None] == [
        (adele.id, 1),
        (adele.id, 2),
        (bob.id, 1),
    ]
    adele, bob, carol = (mailbox_row(db, f"{name}@contoso.com") for name in ("adele", "bob", "carol"))
    assert (adele.delivered_sequence, adele.delivery_owner) == (2, "a")
    assert (bob.delivered_sequence, bob.delivery_owner) == (1, None)
    assert (carol.delivered_sequence, carol.delivery_owner) == (0, "a")


def test_a_claim_reads_the_mailboxes_with_changes_waiting_not_the_outbox(db: Database) -> None:
    """The claim runs after every sync commit: grouping the whole undelivered outbox made it 220 ms with 10,000
    mailboxes' first changes waiting (SQLite); it reads the partial index of mailboxes with changes instead."""
    if db.backend != "sqlite":
        pytest.skip("the plan checked is SQLite's")
    emit(db, "adele@contoso.com", 1)
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.session() as session:
            now = datetime.now(UTC)
            claim_due(session, owner="a", now=now, until=now, limit=8, exclude={99}, batch_size=20)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    [(claim, parameters)] = [(sql, parameters) for sql, parameters in statements if "FROM mailbox" in sql]
    with db.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {claim}", parameters).all()

    assert [row[-1] for row in plan] == ["SEARCH mailbox USING INDEX ix_mailbox_undelivered (delivery_due_at<?)"]


# -- leases: several instances on one database -------------------------------------------------------------


async def test_the_lease_is_given_back_once_the_mailbox_is_drained(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 2)

    await workers().deliver_once()

    row = mailbox_row(db, "adele@contoso.com")
    assert (row.delivery_owner, row.delivery_lease_until) == (None, None)


async def test_a_mailbox_leased_by_another_instance_is_left_alone_until_its_lease_runs_out(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emit(db, "adele@contoso.com", 1)
    clock = Clock()
    with db.session() as session:
        row = session.exec(select(MailboxRow)).one()
        row.delivery_owner = "b"
        row.delivery_lease_until = clock.now + timedelta(seconds=30)
    worker = workers(clock=clock)

    while_leased = await worker.deliver_once()
    clock.advance(timedelta(seconds=31))
    after_expiry = await worker.deliver_once()

    assert (while_leased, after_expiry) == (0, 1)


async def test_two_instances_never_deliver_one_mailbox_at_the_same_time(
    db: Database, second_db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    addresses = [f"person{n}@contoso.com" for n in range(6)]
    workforce.slow(10)
    first = workers(owner="a", batch_size=3, concurrency=4)
    second = workers(owner="b", database=second_db, batch_size=3, concurrency=4)
    async with running(first), running(second):
        for _ in range(3):
            for address in addresses:
                emit(db, address, 4)
            first.notify()
            second.notify()
            await asyncio.sleep(0.05)
        changes = await workforce.wait_for(72, within=15)

    assert all(sequences(changes, address) == list(range(1, 13)) for address in addresses)
    assert workforce.anomalies == []
    assert workforce.stats()["overlaps"] == 0
    assert workforce.duplicates == 0


# -- the pull feed -----------------------------------------------------------------------------------------


def test_changes_after_pages_through_the_outbox_in_order(db: Database) -> None:
    emitted = emit(db, "adele@contoso.com", 3) + emit(db, "bob@contoso.com", 2)
    pages = []
    cursor = 0
    with db.session() as session:
        while True:
            page, cursor = changes_after(session, cursor, 2)
            if not page:
                break
            pages.append(page)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [change for page in pages for change in page] == emitted
    assert cursor == outbox(db)[-1].id


def test_changes_after_the_last_one_returns_the_same_cursor(db: Database) -> None:
    emit(db, "adele@contoso.com", 2)
    last = outbox(db)[-1].id
    assert last is not None

    with db.session() as session:
        assert changes_after(session, last, 10) == ([], last)


async def test_the_pull_feed_keeps_delivered_changes(
    db: Database, workforce: WorkforceReceiver, workers: Workers
) -> None:
    emitted = emit(db, "adele@contoso.com", 2)
    await workers().deliver_once()

    with db.session() as session:
        assert changes_after(session, 0, 10)[0] == emitted


async def test_a_refused_signature_is_logged_with_a_hint_at_the_secret(
    db: Database, workforce: WorkforceReceiver, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.delivery")
    emit(db, "adele@contoso.com", 1)

    await workers(secret=OTHER_SECRET).deliver_once()

    [message] = [record.getMessage() for record in caplog.records if record.name == "bridge.delivery"]
    assert message == (
        f"workforce webhook {workforce.url} answered 401 Unauthorized (is workforce.signing_secret the secret the"
        " workforce system checks? does the endpoint or a proxy in front of it want other authentication?);"
        " changes are kept and retried"
    )
