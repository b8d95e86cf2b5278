"""Rosters: a CSV (or the admin API's list) checked whole, then enrolled in one transaction (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bridge import admin, roster
from bridge.cli import main
from bridge.roster import RosterRefused, RosterRow
from bridge.store import Database, MailboxRow, MailboxStatus
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.conftest import WORKFORCE_SECRET, DatabaseUrl, free_port, write_bridge_config

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)
SOURCES = ["online", "onprem"]


def rows_of(text: str) -> list[RosterRow]:
    return roster.read_csv(text)


def enrol(db: Database, rows: list[RosterRow], *, dry_run: bool = False) -> roster.RosterPlan:
    with db.session() as session:
        planned = roster.plan(session, rows, SOURCES)
        if not dry_run:
            roster.apply(session, planned, NOW)
        return planned


def mailboxes(db: Database) -> dict[str, tuple[str | None, str, str, bool]]:
    with db.session() as session:
        return {
            row.address: (row.workforce_id, row.source, row.status.value, row.dirty_generation > row.synced_generation)
            for row in session.exec(select(MailboxRow)).all()
        }


def refusal(db: Database, text: str) -> list[str]:
    with pytest.raises(RosterRefused) as refused:
        enrol(db, rows_of(text))
    return list(refused.value.problems)


def test_a_roster_two_instances_apply_at_once_is_applied_once(database_url: DatabaseUrl, db: Database) -> None:
    rows = rows_of("a@contoso.com,E1,online\nb@contoso.com,E2,online\n")
    other = Database(database_url.url, schema=database_url.schema)  # a second instance on the same database
    pool = ThreadPoolExecutor(1)
    try:
        with db.session() as session:
            first = roster.plan(session, rows, SOURCES)
            roster.apply(session, first, NOW)
            second = pool.submit(enrol, other, rows)
            time.sleep(0.5)  # the other instance plans while this one has not committed
            assert not second.done()
        assert [e.address for e in first.added] == ["a@contoso.com", "b@contoso.com"]
        planned = second.result(timeout=30)
        assert (planned.added, planned.unchanged) == ([], 2)
    finally:
        pool.shutdown()
        other.close()


def test_a_csv_with_a_header_and_blank_lines_is_read() -> None:
    rows = rows_of("Address,Workforce ID,Source\n\nadele@contoso.com, E1001 ,online\nnestor@contoso.com,E2001\n")

    assert rows == [
        RosterRow("line 3", "adele@contoso.com", "E1001", "online"),
        RosterRow("line 4", "nestor@contoso.com", "E2001", None),
    ]


def test_new_mailboxes_are_added_with_a_first_sync_pending(db: Database) -> None:
    planned = enrol(db, rows_of("Adele@Contoso.com,E1001,online\nnestor@contoso.com,E2001,onprem\n"))

    assert [e.address for e in planned.added] == ["adele@contoso.com", "nestor@contoso.com"]
    assert mailboxes(db) == {
        "adele@contoso.com": ("E1001", "online", "active", True),
        "nestor@contoso.com": ("E2001", "onprem", "active", True),
    }


def test_a_dry_run_reports_the_same_and_writes_nothing(db: Database) -> None:
    planned = enrol(db, rows_of("adele@contoso.com,E1001,online\n"), dry_run=True)

    assert [e.address for e in planned.added] == ["adele@contoso.com"]
    assert mailboxes(db) == {}
    assert roster.describe(planned, dry_run=True) == [
        "add    adele@contoso.com  E1001  online",
        "1 would be added, 0 re-enabled, 0 updated; 0 unchanged",
    ]


def test_disabled_ones_are_enabled_again_active_ones_updated_or_left(db: Database) -> None:
    with db.session() as session:
        for address, workforce_id in (("adele@contoso.com", "E1001"), ("bob@contoso.com", "E1002")):
            admin.add_mailbox(session, address, workforce_id, "online", NOW)
        admin.add_mailbox(session, "carol@contoso.com", "E1003", "online", NOW)
        admin.disable(session, "carol@contoso.com", "on leave")

    planned = enrol(
        db, rows_of("adele@contoso.com,E1001,online\nbob@contoso.com,E1002,onprem\ncarol@contoso.com,E1003,online\n")
    )

    assert ([e.address for e in planned.reenabled], [e.address for e in planned.updated], planned.unchanged) == (
        ["carol@contoso.com"],
        ["bob@contoso.com"],
        1,
    )
    assert mailboxes(db)["carol@contoso.com"][2] == "active"
    assert mailboxes(db)["bob@contoso.com"][1] == "onprem"


def test_every_problem_is_listed_with_its_line_and_nothing_is_written(db: Database) -> None:
    problems = refusal(
        db,
        "adele@contoso.com,E1001,online\n"
        "not-an-address,E1002,online\n"
        "bob@contoso.com,,online\n"
        "carol@contoso.com,E1003,exchange2010\n"
        "ADELE@contoso.com,E1004,online\n"
        "dan@contoso.com,E1001,online\n"
        "erin@contoso.com,E1005\n"
        "fay@contoso.com,E1006,online,extra\n",
    )

    assert problems == [
        "line 2: 'not-an-address' is not a mail address",
        "line 3: the workforce id is missing",
        "line 4: 'exchange2010' is not a configured source (online, onprem)",
        "line 5: address ADELE@contoso.com is listed already (line 1)",
        "line 6: workforce id 'E1001' is listed already (line 1)",
        "line 7: the source is missing; configured: online, onprem",
        "line 8: more than three columns (address, workforce id, source)",
    ]
    assert mailboxes(db) == {}


def test_a_workforce_id_an_active_mailbox_outside_the_roster_holds_is_refused(db: Database) -> None:
    with db.session() as session:
        admin.add_mailbox(session, "adele@contoso.com", "E1001", "online", NOW)

    problems = refusal(db, "megan@contoso.com,E1001,online\n")

    assert problems == [
        "line 1: workforce id 'E1001' belongs to the active mailbox adele@contoso.com; disable or remove that one first"
    ]


def test_workforce_ids_may_move_between_mailboxes_the_roster_lists(db: Database) -> None:
    with db.session() as session:
        admin.add_mailbox(session, "adele@contoso.com", "E1001", "online", NOW)
        admin.add_mailbox(session, "bob@contoso.com", "E1002", "online", NOW)

    enrol(db, rows_of("adele@contoso.com,E1002,online\nbob@contoso.com,E1001,online\n"))

    assert mailboxes(db)["adele@contoso.com"][0] == "E1002"


def test_adding_one_mailbox_with_a_workforce_id_an_active_one_holds_is_refused(db: Database) -> None:
    with db.session() as session:
        admin.add_mailbox(session, "adele@contoso.com", "E1001", "online", NOW)

    with (
        pytest.raises(admin.UserError, match="belongs to the active mailbox"),
        db.session() as session,
    ):
        admin.add_mailbox(session, "megan@contoso.com", "E1001", "online", NOW)

    assert set(mailboxes(db)) == {"adele@contoso.com"}


def test_ten_thousand_rows_enrol_in_one_go(db: Database) -> None:
    text = "".join(f"person{n}@contoso.com,E{n:05d},online\n" for n in range(10_000))

    planned = enrol(db, rows_of(text))

    assert len(planned.added) == 10_000
    with db.session() as session:
        rows = session.exec(select(MailboxRow).where(MailboxRow.status == MailboxStatus.ACTIVE)).all()
    assert len(rows) == 10_000
    assert all(row.dirty_generation > row.synced_generation for row in rows)


async def test_with_the_exchange_check_a_mailbox_exchange_refuses_is_refused_with_its_reason(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    graph_emulator.add_user("bob@contoso.com", "Bob Kelly")
    config = write_bridge_config(
        tmp_path / "config.yaml", graph=graph_emulator, app=tenant_app, mailbox=adele.user_principal_name,
        workforce_url="http://127.0.0.1:9/", secret=WORKFORCE_SECRET, database_url=f"sqlite:///{tmp_path / 'b.db'}",
        port=free_port(),
    )  # fmt: skip
    team = tmp_path / "team.csv"
    team.write_text("bob@contoso.com,E1002\nghost@contoso.com,E1003\n", encoding="utf-8")
    command = ["mailboxes", "import", str(team), "--check-exchange", "--config", str(config)]
    assert await asyncio.to_thread(main, ["db", "upgrade", "--config", str(config)]) == 0
    capsys.readouterr()

    refused = await asyncio.to_thread(main, command)
    err = capsys.readouterr().err
    team.write_text("bob@contoso.com,E1002\n", encoding="utf-8")
    enrolled = await asyncio.to_thread(main, command)

    assert refused == 1
    assert "line 2: Exchange refuses ghost@contoso.com" in err
    assert "ErrorInvalidUser" in err
    assert "bob@contoso.com" not in err
    assert enrolled == 0
    assert "1 were added" in capsys.readouterr().out
