from __future__ import annotations

import asyncio
import contextlib
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bridge.errors import UserError
from bridge.store import Database, MailboxRow, OutboxRow, SubscriptionRow, lock_outbox
from bridge.store.db import GroupCommit
from bridge.store.outbox import changes_after
from tests.store import add_mailbox, outbox_row


def count_mailboxes(db: Database) -> int:
    with db.session() as session:
        return session.exec(select(func.count()).select_from(MailboxRow)).one()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        with database.session() as session:
            assert session.connection().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        database.close()


def test_foreign_keys_are_enforced(db: Database) -> None:
    subscription = SubscriptionRow(
        id="sub-1",
        mailbox_id=999,
        source="exchange",
        resource="/users/nobody/events",
        client_state="secret",
        expires_at=datetime.now(UTC),
    )
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(subscription)


async def test_run_commits_when_fn_returns(db: Database) -> None:
    await db.run(add_mailbox)

    assert count_mailboxes(db) == 1


async def test_run_rolls_back_when_fn_raises(db: Database) -> None:
    def add_then_fail(session: Session) -> None:
        add_mailbox(session)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.run(add_then_fail)

    assert count_mailboxes(db) == 0


async def test_rows_returned_by_run_stay_readable_after_commit(db: Database) -> None:
    def add_and_return(session: Session) -> MailboxRow:
        row = MailboxRow(address="bob@example.com", source="exchange")
        session.add(row)
        return row

    row = await db.run(add_and_return)

    assert (row.id, row.address) == (1, "bob@example.com")


async def test_run_does_not_block_the_event_loop(db: Database) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    def slow(session: Session) -> str:
        session.connection()
        time.sleep(0.5)
        return "done"

    ticker = asyncio.create_task(tick())
    try:
        assert await db.run(slow) == "done"
    finally:
        ticker.cancel()
    assert ticks >= 10


async def test_urgent_work_goes_before_work_still_queued(db: Database) -> None:
    busy = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def hold(session: Session) -> None:
        busy.set()
        assert release.wait(5)

    def record(name: str) -> Callable[[Session], None]:
        return lambda session: order.append(name)

    holders = [asyncio.create_task(db.run(hold)) for _ in range(4)]  # every thread busy (4 on PostgreSQL, 1 on SQLite)
    assert await asyncio.to_thread(busy.wait, 5)
    queued = [asyncio.create_task(db.run(record(f"sync {n}"))) for n in range(3)]
    answer = asyncio.create_task(db.run(record("command"), urgent=True))
    await asyncio.sleep(0.05)  # everything is queued
    release.set()
    await asyncio.gather(*holders, *queued, answer)

    assert order[0] == "command"
    assert order[1:] == ["sync 0", "sync 1", "sync 2"]


async def test_cancelling_a_caller_before_its_work_started_leaves_the_work_undone(db: Database) -> None:
    release = threading.Event()
    ran: list[str] = []

    def hold(session: Session) -> None:
        assert release.wait(5)

    holders = [asyncio.create_task(db.run(hold)) for _ in range(4)]
    waiting = asyncio.create_task(db.run(lambda session: ran.append("late")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting  # the cancel has reached the queued work
    release.set()
    await asyncio.gather(*holders)
    db.close()  # runs whatever is still queued

    assert ran == []


def test_outbox_writers_do_not_wait_for_each_other(db: Database) -> None:
    if db.backend == "sqlite":
        pytest.skip("SQLite lets one transaction write at a time")
    with db.session() as session:
        first_mailbox, second_mailbox = add_mailbox(session), add_mailbox(session, "bob@example.com")
    first_inserted, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with db.session() as session:
            lock_outbox(session)
            session.add(outbox_row(first_mailbox, 1))
            session.flush()
            first_inserted.set()
            assert release_first.wait(5)

    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(first)
        assert first_inserted.wait(5)
        try:
            with db.session() as session:  # commits while the first writer still holds its id
                lock_outbox(session)
                session.add(outbox_row(second_mailbox, 1))
        finally:
            release_first.set()
        held.result(timeout=5)


def test_a_feed_reader_never_skips_a_change_that_commits_after_a_higher_one(db: Database) -> None:
    with db.session() as session:
        first_mailbox, second_mailbox = add_mailbox(session), add_mailbox(session, "bob@example.com")
    first_inserted, release_first = threading.Event(), threading.Event()

    def late_writer() -> None:
        with db.session() as session:
            lock_outbox(session)
            session.add(_change(first_mailbox, "late"))
            session.flush()
            first_inserted.set()
            assert release_first.wait(5)

    def read() -> list[str]:
        with db.session() as session:
            changes, _cursor = changes_after(session, 0, 100)
        return [change["id"] for change in changes]

    with ThreadPoolExecutor(max_workers=2) as pool:
        late = pool.submit(late_writer)
        assert first_inserted.wait(5)
        if db.backend == "postgresql":
            with db.session() as session:  # a higher id, committed first
                lock_outbox(session)
                session.add(_change(second_mailbox, "early"))
        reading = pool.submit(read)
        waited = not _done_within(reading, 0.3)
        release_first.set()
        late.result(timeout=5)
        seen = reading.result(timeout=5)
    if db.backend == "postgresql":
        # The reader waited for the lower id to commit and got both, in id order: its cursor skips nothing.
        assert waited
        assert seen == ["late", "early"]
    else:
        assert seen == ["late"]  # SQLite: every transaction waits for the one writer


def _change(mailbox_id: int, change_id: str) -> OutboxRow:
    row = outbox_row(mailbox_id, 1, change_id)
    row.payload = {"id": change_id}
    return row


def _done_within(future: Future[list[str]], seconds: float) -> bool:
    try:
        future.result(timeout=seconds)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://bridge@db.example.com/bridge", "sqlite://", "postgresql+asyncpg://bridge@localhost/bridge"],
)
def test_bad_url_raises_user_error_naming_database_url(url: str) -> None:
    with pytest.raises(UserError, match="database_url"):
        Database(url)


def test_unreachable_server_raises_user_error_naming_database_url() -> None:
    database = Database("postgresql://bridge@127.0.0.1:1/bridge")
    try:
        with pytest.raises(UserError, match=r"database_url postgresql://bridge@127\.0\.0\.1:1/bridge"):
            database.current_revision()
    finally:
        database.close()


def test_connection_errors_do_not_show_the_password() -> None:
    database = Database("postgresql://bridge:hunter2@127.0.0.1:1/bridge")
    try:
        with pytest.raises(UserError) as raised:
            database.current_revision()
    finally:
        database.close()
    assert "hunter2" not in str(raised.value)


def test_schema_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="schema"):
        Database(f"sqlite:///{tmp_path / 'bridge.db'}", schema="bridge")


def test_the_sqlite_file_and_its_side_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "bridge.db"
    database = Database(f"sqlite:///{path}")
    try:
        database.upgrade()
        with database.session() as session:
            session.add(MailboxRow(address="adele@contoso.com", source="online"))
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        database.close()

    assert files.keys() >= {"bridge.db", "bridge.db-wal", "bridge.db-shm"}
    assert set(files.values()) == {0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_sqlite_file_left_readable_by_others_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    path.touch(mode=0o644)
    path.chmod(0o644)

    Database(f"sqlite:///{path}").close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_work_that_ends_after_its_event_loop_closed_leaves_the_threads_working(db: Database) -> None:
    release = threading.Event()

    async def leave_behind() -> None:
        left = asyncio.ensure_future(db.run(lambda session: release.wait(5)))
        await asyncio.sleep(0.05)  # under way when the loop closes
        assert not left.done()

    asyncio.run(leave_behind())
    release.set()  # its outcome now has no loop to go to

    async def more() -> str:
        return await asyncio.wait_for(db.run(lambda session: "still working"), 5)

    assert asyncio.run(more()) == "still working"


# -- GroupCommit: jobs that come together, one transaction; refused together, each alone -------------------------


class Commits:
    """A GroupCommit adding mailboxes (a job is an address), counting the transactions it ran."""

    def __init__(self, db: Database, most: int | None = None) -> None:
        self.transactions = 0
        self.group = GroupCommit(db, self._commit, most=most)

    def _commit(self, session: Session, addresses: list[str]) -> list[int | Exception]:
        self.transactions += 1
        outcomes: list[int | Exception] = []
        for address in addresses:
            if address.startswith("refused"):
                outcomes.append(ValueError(address))  # this job's own failure: the others commit
            else:
                outcomes.append(add_mailbox(session, address))
        return outcomes


async def test_jobs_submitted_together_commit_in_one_transaction_each_with_its_own_outcome(db: Database) -> None:
    commits = Commits(db)
    addresses = ["m0@example.com", "refused@example.com", "m1@example.com", "m2@example.com"]

    outcomes = await asyncio.gather(*(commits.group.submit(address) for address in addresses), return_exceptions=True)

    assert isinstance(outcomes[1], ValueError)
    ids = [outcomes[0], outcomes[2], outcomes[3]]
    assert commits.transactions == 1
    assert len(set(ids)) == 3
    assert count_mailboxes(db) == 3


async def test_a_group_the_database_refuses_is_committed_job_by_job(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session, "taken@example.com")
    commits = Commits(db)

    outcomes = await asyncio.gather(
        *(commits.group.submit(address) for address in ("a@example.com", "taken@example.com", "b@example.com")),
        return_exceptions=True,
    )

    assert isinstance(outcomes[1], IntegrityError)  # the duplicate address fails alone
    assert all(isinstance(outcome, int) for outcome in (outcomes[0], outcomes[2]))
    assert commits.transactions == 1 + 3
    assert count_mailboxes(db) == 3


async def test_a_group_holds_at_most_its_bound(db: Database) -> None:
    commits = Commits(db, most=2)

    await asyncio.gather(*(commits.group.submit(f"m{n}@example.com") for n in range(5)))

    assert commits.transactions == 3
    assert count_mailboxes(db) == 5
