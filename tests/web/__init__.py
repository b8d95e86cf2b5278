"""Tests of the bridge's HTTP app; what the test modules share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.domain import ChangeType, FreeBusy, PresenceEntry
from bridge.store import Database, MailboxRow
from bridge.store.outbox import add_changes
from bridge.templates import default_mapping_path, load_mapping

MAPPING = load_mapping(default_mapping_path())
WORKFORCE_TOKEN = "wf-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def add_feed(db: Database, count: int, address: str = "adele@contoso.com") -> None:
    with db.session() as session:
        mailbox = MailboxRow(address=address, workforce_id="E1001", source="online")
        session.add(mailbox)
        session.flush()
        entries = [(ChangeType.CREATED, entry(n)) for n in range(count)]
        add_changes(session, mailbox, entries, T0)


def entry(n: int) -> PresenceEntry:
    start = T0 + timedelta(hours=n)
    return PresenceEntry(
        f"item{n}", "meeting", FreeBusy.BUSY, start, start + timedelta(minutes=30), False, f"Meeting {n}"
    )


DAY = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), datetime.min.time(), tzinfo=UTC)


def at(hour: float) -> datetime:
    return DAY + timedelta(hours=hour)
