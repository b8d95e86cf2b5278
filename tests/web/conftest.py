"""The bridge's app on a loopback port, with a workforce and an admin token configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Config, load_config
from bridge.domain import Appointment, FreeBusy
from bridge.marks import DirtyMarks
from bridge.relay import Relay
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
from bridge.store import Database, MailboxRow
from bridge.store.mirror import write_mirror
from bridge.web.answers import record
from bridge.web.app import create_app
from bridge.web.graph_hooks import GraphHooks
from tests.conftest import offline_config
from tests.web import ADMIN_TOKEN, DAY, MAPPING, WORKFORCE_TOKEN, Client, at


@pytest.fixture
def config(tmp_path: Path) -> Config:
    tokens = f"""
        api_tokens:
          - name: workforce
            token: {WORKFORCE_TOKEN}
            scopes: [workforce]
          - name: admin
            token: {ADMIN_TOKEN}
            scopes: [admin]
    """
    path = offline_config(tmp_path / "config.yaml", extra=tokens)
    return load_config(path)


@pytest.fixture
async def app_client(config: Config, db: Database) -> AsyncIterator[Client]:
    relay = Relay(db, {}, lambda: MAPPING, config.mail, owner="test", record=record)
    app = create_app(config, db, GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS), lambda: MAPPING, relay)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def mirror(db: Database, *appointments: Appointment) -> None:
    with db.session() as session:
        mailbox = MailboxRow(address="adele@contoso.com", workforce_id="E1001", source="online")
        session.add(mailbox)
        session.flush()
        assert mailbox.id is not None
        write_mirror(session, mailbox.id, [MAPPING.mirror_item(a)[0] for a in appointments], ())


def appointment(
    item_id: str, start: datetime, end: datetime, state: FreeBusy, subject: str, **fields: object
) -> Appointment:
    return Appointment(item_id, f"ck-{item_id}", start, end, state, subject, **fields)  # type: ignore[arg-type]


@pytest.fixture
def calendar(db: Database) -> None:
    mirror(
        db,
        appointment("oof", DAY, DAY + timedelta(days=1), FreeBusy.OOF, "Vacation", all_day=True),
        appointment("meeting", at(10), at(11), FreeBusy.BUSY, "Customer call"),
        appointment("doctor", at(30), at(31), FreeBusy.BUSY, "Doctor", private=True),
        appointment("hidden", at(33), at(34), FreeBusy.BUSY, "*Errand"),
        appointment("free", at(35), at(36), FreeBusy.FREE, "Focus"),
        appointment("mine", at(40), at(41), FreeBusy.TENTATIVE, "Workshop", bridge_ref="cmd-7"),
    )
