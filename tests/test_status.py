"""`presence-bridge status`: one screen on a bad day (the same as JSON: tests/web/test_admin_status.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bridge.cli import main
from bridge.store import Database, MailboxRow
from tests.conftest import DatabaseUrl
from tests.store import add_troubles


def test_status_shows_sources_mailboxes_subscriptions_backlog_and_errors(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--config", str(cli_config)]) == 0
    database = Database(database_url.url, schema=database_url.schema)
    try:
        with database.session() as session:
            add_troubles(session)
            # Two instances at work: one syncs a mailbox, the other delivers its changes; an expired lease is nobody's.
            rows = session.exec(select(MailboxRow).order_by(col(MailboxRow.address))).all()
            later = datetime.now(UTC) + timedelta(hours=1)
            rows[0].lease_owner, rows[0].lease_expires_at = "host-a:4711:0a1b2c", later
            rows[0].delivery_owner, rows[0].delivery_lease_until = "host-b:815:3d4e5f", later
            rows[1].lease_owner, rows[1].lease_expires_at = "host-c:99:6a7b8c", datetime.now(UTC) - timedelta(hours=1)
    finally:
        database.close()
    capsys.readouterr()

    assert main(["status", "--config", str(cli_config)]) == 0

    screen = capsys.readouterr().out
    assert "onprem           ews    unreachable  since 2026-11-30 11:55:00Z: ConnectionRefusedError" in screen
    assert "online           1 active, 0 disabled, 1 paused" in screen
    assert "                   time zones: 1 Europe/Berlin, 1 not read yet" in screen
    assert "grady@contoso.com: paused since" in screen
    assert "paused: one read would delete 9 of 9" in screen
    assert "nestor@contoso.com: disabled since" in screen
    lines = screen.splitlines()
    expiring = lines[lines.index("subscriptions expiring soonest") + 1]
    assert expiring.startswith("  adele@contoso.com")
    assert expiring.endswith("; reauthorization requested")
    assert "  2 undelivered, oldest " in screen
    assert "; 1 failing" in screen
    assert "adele@contoso.com: 3 attempts, next 2026-11-30 12:00:30Z: answered 503 Service Unavailable" in screen
    assert "  a change is held since 2026-11-30 11:58:00Z: it would withdraw 7 appointments; see " in screen
    instances = lines[lines.index("instances holding mailboxes now (syncing, delivering)") + 1 :][:3]
    assert [line.split() for line in instances[:2]] == [
        ["host-a:4711:0a1b2c", "1", "syncing,", "0", "delivering"],
        ["host-b:815:3d4e5f", "0", "syncing,", "1", "delivering"],
    ]
    assert "host-c" not in screen


def test_status_on_a_database_behind_the_code_says_how_to_upgrade(
    cli_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(cli_config)]) == 1
    assert "db upgrade --config" in capsys.readouterr().err


def test_status_shows_the_progress_of_a_large_sync(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--config", str(cli_config)]) == 0
    database = Database(database_url.url, schema=database_url.schema)
    now = datetime.now(UTC)
    try:
        with database.session() as session:
            for n in range(30):
                synced = n < 10
                session.add(
                    MailboxRow(
                        address=f"m{n}@example.com",
                        source="online",
                        dirty_generation=1,
                        synced_generation=1 if synced else 0,
                        dirty_at=None if synced else now - timedelta(seconds=30),
                        last_synced_at=now - timedelta(seconds=10) if synced else None,
                    )
                )
    finally:
        database.close()
    capsys.readouterr()

    assert main(["status", "--config", str(cli_config)]) == 0

    lines = capsys.readouterr().out.splitlines()
    # 10 synced since the backlog began, of 30 (and the configured mailbox, waiting for its first sync).
    assert re.fullmatch(r"  10/31 mailboxes synced \(32 %\), 0/s, eta \d+ min \d+ s", lines[lines.index("sync") + 1])
