"""Tests of the bridge's HTTP app; what the test modules share."""

from __future__ import annotations

import asyncio
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


async def raw_request(client: Client, request: bytes) -> tuple[int, bytes]:
    """Send `request` as it is (bytes an HTTP client would refuse to send); the answer's status and body."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            (int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")), 0
        )
        return status, await reader.readexactly(length)
    finally:
        writer.close()
