"""Dirty marks are group-committed: every caller returns only once its marks are in the database."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from bridge.marks import DirtyMarks
from bridge.store import Database, MailboxRow
from tests.store import add_mailbox


def generations(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {row.address: row.dirty_generation for row in session.exec(select(MailboxRow)).all()}


async def test_concurrent_marks_share_commits_and_all_land(db: Database) -> None:
    with db.session() as session:
        ids = [add_mailbox(session, f"user{n}@example.com") for n in range(20)]
    commits = 0

    def counted() -> None:
        nonlocal commits
        commits += 1

    marks = DirtyMarks(db, on_commit=counted)
    await asyncio.gather(*(marks.mark([mailbox]) for mailbox in ids for _ in range(5)))

    assert all(value >= 1 for value in generations(db).values())
    assert commits < 100  # 100 marks, far fewer transactions


async def test_a_failed_commit_reaches_every_waiting_caller(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
    marks = DirtyMarks(db)
    db.close()  # the thread pool is gone: the commit cannot happen

    with pytest.raises(RuntimeError):
        await marks.mark([mailbox])


async def test_marking_nothing_commits_nothing(db: Database) -> None:
    commits = []
    await DirtyMarks(db, on_commit=lambda: commits.append(1)).mark([])
    assert commits == []
