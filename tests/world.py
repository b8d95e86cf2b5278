"""The whole bridge on loopback for end-to-end tests: the Graph emulator, the service and a workforce receiver.

The `world` fixture starts them (a plugin of tests/conftest.py); the helpers here drive and observe them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

from bridge.config import load_config
from bridge.mailbox_sync import SyncTiming
from bridge.service import Service
from bridge.store import Database, MailboxRow, MailboxStatus, SubscriptionRow
from bridge.store.models import MailboxMarkRow
from bridge.templates import default_mapping_path
from emulators.ews import EwsEmulator
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from emulators.harness import OnPrem
from emulators.workforce import WorkforceReceiver
from tests.conftest import POSTGRES_URL, DatabaseUrl, free_port, write_bridge_config

API_TOKEN = "world-workforce-token-0123456789"
ADMIN_TOKEN = "world-admin-token-0123456789"
SECRET = "whsec_dGVzdC1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5"
FAST = SyncTiming(
    settle=timedelta(milliseconds=50),
    poll=timedelta(milliseconds=100),
    backoff_first=timedelta(milliseconds=200),
    unreachable_first=timedelta(milliseconds=200),
    unreachable_max=timedelta(seconds=1),
    auth_first=timedelta(milliseconds=500),
    auth_max=timedelta(seconds=2),
)


class Clock:
    """Real time, shifted by `offset`: lets a test cross midnight without waiting for it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def at(days: int, hour: float) -> dict[str, str]:
    moment = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


@dataclass
class World:
    graph: GraphEmulator
    workforce: WorkforceReceiver
    service: Service
    mailbox: str
    config_path: Path
    clock: Clock
    ews: EwsEmulator | None = None

    def outlook(
        self, subject: str, days: int = 1, start: float = 9, end: float = 10, show_as: str = "busy", **extra: Any
    ) -> str:
        payload = {"subject": subject, "start": at(days, start), "end": at(days, end), "showAs": show_as, **extra}
        return str(self.graph.create_event_as_outlook(self.mailbox, payload)["id"])

    async def changes(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:
        await self.workforce.wait_for(count, within=within)
        return list(self.workforce.changes)

    async def settled(self, quiet_s: float = 1.0, within: float = 15.0) -> list[dict[str, Any]]:
        """The changes received once nothing new has arrived for `quiet_s` while no active mailbox waited for a
        sync (on a loaded machine a quiet spell alone could end before the first read had even started)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen, since = -1, loop.time()
        while loop.time() < deadline:
            await self.graph.drain_notifications(within=1.0)
            if len(self.workforce.changes) != seen or self._syncs_pending():
                seen, since = len(self.workforce.changes), loop.time()
            elif loop.time() - since >= quiet_s:
                break
            await asyncio.sleep(0.1)
        return list(self.workforce.changes)

    def _syncs_pending(self) -> bool:
        with self.service.db.session() as session:
            pending = select(MailboxRow.id).where(
                MailboxRow.status == MailboxStatus.ACTIVE, MailboxRow.dirty_generation > MailboxRow.synced_generation
            )
            return session.exec(pending).first() is not None

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        token: str = API_TOKEN,
    ) -> tuple[int, Any, dict[str, str]]:
        """Call the bridge's REST API as the workforce system (or with `token`): status, JSON body, headers."""
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.service.url}{path}", json=body, headers=sent) as response,
        ):
            text = await response.text()
            parsed = json.loads(text) if text else None
            return response.status, parsed, dict(response.headers)

    async def restart(self) -> Service:
        """Stop the bridge and start a new one on the same configuration and database (a process restart)."""
        config, schema = self.service.config, self.service.db.schema
        await self.service.stop()
        database = Database(config.database_url, schema=schema)
        self.service = Service(config, clock=self.clock, timing=FAST, database=database)
        await self.service.start()
        return self.service

    def cli_config(self) -> Path:
        """The config for `presence-bridge` commands run beside the service (on PostgreSQL: in its schema)."""
        schema = self.service.db.schema
        if schema is None:
            return self.config_path
        path = self.config_path.with_name("cli.yaml")
        text = self.config_path.read_text().replace(POSTGRES_URL, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
        path.write_text(text)
        return path

    def mailbox_row(self) -> MailboxRow:
        with self.service.db.session() as session:
            return session.exec(select(MailboxRow).where(MailboxRow.address == self.mailbox.lower())).one()

    def marks_waiting(self) -> bool:
        """Whether a dirty mark waits beside its mailbox for a claim to fold it in (PostgreSQL, store/work.py)."""
        with self.service.db.session() as session:
            return session.exec(select(MailboxMarkRow.id).limit(1)).first() is not None


ONPREM_MAILBOX = "nestor@contoso.com"
SERVICE_ACCOUNT = ("CONTOSO\\svc-presence", "world-service-account-password")


@pytest.fixture
async def world(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    async with _running(graph_emulator, tenant_app, adele, database_url, tmp_path, None) as running:
        yield running


TEAM_GROUP = "0b5c3f9e-6d1a-4e8b-9c2d-7a4f1e3b5d60"


@pytest.fixture
async def group_world(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The world whose Graph source follows the Entra ID group TEAM_GROUP (workforce ids from employeeId). The
    group is empty when the bridge starts; a test fills it and asks for a refresh (`service.groups.sync`)."""
    graph_emulator.add_group("Team", group_id=TEAM_GROUP)
    group = f"group: {{id: {TEAM_GROUP}, workforce_id: employeeId, refresh: PT1M}}"
    async with _running(graph_emulator, tenant_app, adele, database_url, tmp_path, None, graph_extra=group) as running:
        yield running


@pytest.fixture
async def hybrid(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The world with an on-premises Exchange (the EWS emulator) beside the tenant: Nestor's mailbox is there."""
    async with _hybrid(graph_emulator, tenant_app, adele, database_url, tmp_path, []) as running:
        yield running


CROWD = [(f"colleague{n}@contoso.com", f"E3{n:03d}") for n in range(30)]


@pytest.fixture
async def crowd(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The world with 30 more online mailboxes whose calendars are full before the bridge first starts (each with
    single appointments and recurring series, whose masters are read beside the delta), and 20 ms per Graph
    answer: the bridge's first start syncs them all at once."""
    for address, _ in CROWD:
        graph_emulator.add_user(address)
        for n in range(6):
            graph_emulator.create_event_as_outlook(
                address, {"subject": f"single {n}", "start": at(n + 1, 9), "end": at(n + 1, 10), "showAs": "busy"}
            )
            daily = {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": at(1, 0)["dateTime"][:10], "numberOfOccurrences": 3},
            }
            series = {"subject": f"series {n}", "start": at(1, 11 + n), "end": at(1, 11.5 + n), "showAs": "busy"}
            graph_emulator.create_event_as_outlook(address, series | {"recurrence": daily})
    graph_emulator.set_latency(20)
    async with _running(graph_emulator, tenant_app, adele, database_url, tmp_path, None, also=CROWD) as running:
        yield running


class ChatReceiver:
    """A chat system's incoming webhook on loopback: records each JSON body; can be told to fail for a while."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.refused = 0
        self._failing: int | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail(self, status: int = 503) -> None:
        self._failing = status

    def recover(self) -> None:
        self._failing = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks/chat/{token}", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hooks/chat/T0123-secret-part"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        if self._failing is not None:
            self.refused += 1
            return web.Response(status=self._failing, text="chat is down")
        self.messages.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def chat() -> AsyncIterator[ChatReceiver]:
    receiver = ChatReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


NOTICE_RECIPIENT = "it-ops@contoso.com"


@pytest.fixture
async def notified(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
    chat: ChatReceiver,
) -> AsyncIterator[World]:
    """The world with notices: to `chat` and mailed to NOTICE_RECIPIENT, problems looked for every second."""
    notify = f"notify: {{webhook_url: '{chat.url}', mail_to: [{NOTICE_RECIPIENT}], interval: PT1S}}\n"
    async with _running(graph_emulator, tenant_app, adele, database_url, tmp_path, None, notify) as running:
        yield running


ONLINE_COLLEAGUE = ("bob@contoso.com", "E1002")


@pytest.fixture
async def hybrid_team(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    bob: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The hybrid world with a second online mailbox (Bob's), so that one mailbox of a source can fail alone."""
    async with _hybrid(graph_emulator, tenant_app, adele, database_url, tmp_path, [ONLINE_COLLEAGUE]) as running:
        yield running


@pytest.fixture
async def tight_team(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    bob: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The hybrid team with as many places as sources (`sync.concurrency: 2`): one place in each lane."""
    also = [ONLINE_COLLEAGUE]
    async with _hybrid(
        graph_emulator, tenant_app, adele, database_url, tmp_path, also, sync=", concurrency: 2"
    ) as running:
        yield running


NARROW_COLLEAGUE = ("carol@contoso.com", "E1003")


@pytest.fixture
async def narrow_team(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    bob: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The hybrid team with a third online mailbox (Carol's) and room for three mailboxes at once
    (`sync.concurrency: 3`): as many as the online source has."""
    graph_emulator.add_user(NARROW_COLLEAGUE[0], "Carol Smith")
    team = [ONLINE_COLLEAGUE, NARROW_COLLEAGUE]
    async with _hybrid(
        graph_emulator, tenant_app, adele, database_url, tmp_path, team, sync=", concurrency: 3"
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def _hybrid(
    graph: GraphEmulator,
    app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
    also: list[tuple[str, str]],
    *,
    sync: str = "",
) -> AsyncIterator[World]:
    async with EwsEmulator(ca_file=tmp_path / "ews-ca.pem", keepalive_interval=0.5) as ews:
        ews.add_mailbox(ONPREM_MAILBOX, "Nestor Wilke")
        ews.add_service_account(*SERVICE_ACCOUNT)
        async with _running(graph, app, adele, database_url, tmp_path, ews, also=also, sync=sync) as running:
            yield running


ONPREM_CROWD = [(f"onprem{n}@contoso.com", f"P{n:03d}") for n in range(24)]
# The EWS source's bound in the onprem_crowd world (`max_concurrency`), one below the emulator's EWSMaxConcurrency.
ONPREM_BOUND = 4


@pytest.fixture
async def onprem_crowd(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The world with 24 on-premises mailboxes whose calendars are full before the bridge first starts, reached
    with delegate access (every request is charged to the service account's one throttling budget), 30 ms per EWS
    answer and EWSMaxConcurrency lowered to ONPREM_BOUND + 1; the bridge syncs up to 16 mailboxes at once and its
    EWS source is bound to ONPREM_BOUND requests at once."""
    ews = EwsEmulator(ca_file=tmp_path / "ews-ca.pem", keepalive_interval=0.5, max_concurrency=ONPREM_BOUND + 1)
    ews.add_service_account(*SERVICE_ACCOUNT, impersonation=False, full_access=True)
    for address, _ in ONPREM_CROWD:
        ews.add_mailbox(address)
        for n in range(4):
            ews.create_item_as_outlook(
                address, subject=f"single {n}", start=moment(n + 1, 9), end=moment(n + 1, 10), free_busy="Busy"
            )
    ews.latency_ms = 30
    async with (
        ews,
        _running(
            graph_emulator,
            tenant_app,
            adele,
            database_url,
            tmp_path,
            ews,
            sync=", concurrency: 16",
            onprem_mailboxes=tuple(ONPREM_CROWD),
            onprem_extra=("impersonation: false", f"max_concurrency: {ONPREM_BOUND}"),
        ) as running,
    ):
        yield running


def moment(days: int, hour: float) -> datetime:
    """An instant `days` from today at `hour` UTC."""
    return datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)


def onprem_exchange(world: World) -> EwsEmulator:
    assert world.ews is not None
    return world.ews


@contextlib.asynccontextmanager
async def _running(
    graph: GraphEmulator,
    app: AppRegistration,
    adele: DirectoryUser,
    database_url: DatabaseUrl,
    tmp_path: Path,
    ews: EwsEmulator | None,
    extra: str = "",
    *,
    also: list[tuple[str, str]] | None = None,
    graph_extra: str = "",
    sync: str = "",
    onprem_mailboxes: tuple[tuple[str, str], ...] = ((ONPREM_MAILBOX, "E2001"),),
    onprem_extra: tuple[str, ...] = (),
) -> AsyncIterator[World]:
    """`sync`: more of the `sync:` section, as YAML flow-mapping entries (", concurrency: 3"); `onprem_extra`: more
    keys of the EWS source (`OnPrem.extra`)."""
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    (tmp_path / "mapping.yaml").write_text(default_mapping_path().read_text())
    onprem = None if ews is None else OnPrem(ews.url, ews.ca_file, *SERVICE_ACCOUNT, onprem_mailboxes, onprem_extra)
    config_path = write_bridge_config(
        tmp_path / "config.yaml",
        graph=graph,
        app=app,
        mailbox=adele.user_principal_name,
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=database_url.url if database_url.schema else f"sqlite:///{tmp_path / 'bridge.db'}",
        port=free_port(),
        extra=(
            f"templates: mapping.yaml\nsync: {{mass_delete_min: 3{sync}}}\n"
            f"mail: {{sender: {adele.user_principal_name}, source: online}}\n"
            f"api_tokens:\n  - {{name: workforce, token: {API_TOKEN}, scopes: [workforce]}}\n"
            f"  - {{name: admin, token: {ADMIN_TOKEN}, scopes: [admin]}}\n{extra}"
        ),
        onprem=onprem,
        also=also or [],
        graph_extra=graph_extra,
    )
    config = load_config(config_path)
    clock = Clock()
    database = Database(config.database_url, schema=database_url.schema)
    service = Service(config, clock=clock, timing=FAST, database=database)
    await service.start()
    world = World(graph, workforce, service, adele.user_principal_name, config_path, clock, ews)
    try:
        yield world
    finally:
        await world.service.stop()  # the one running now: a test may have restarted it
        await workforce.stop()


async def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def subscribed(world: World) -> Callable[[], bool]:
    return lambda: len(world.graph.subscriptions()) == 1


def stored_subscription(world: World) -> Callable[[], bool]:
    """The bridge has stored its subscription, and with it (same transaction) the catch-up mark that follows."""

    def stored() -> bool:
        with world.service.db.session() as session:
            mailbox = world.mailbox_row()
            return (
                session.exec(select(SubscriptionRow).where(SubscriptionRow.mailbox_id == mailbox.id)).first()
                is not None
            )

    return stored


async def ready(world: World) -> None:
    """Subscribed, and the catch-up sync that follows a new subscription has committed: the bridge is idle.

    Waiting for the emulator's subscription alone raced the bridge storing it: the catch-up mark could land
    after the test had started making changes it expected to go unnotified.
    """
    await wait_until(subscribed(world))
    await wait_until(stored_subscription(world))

    def idle() -> bool:
        row = world.mailbox_row()
        synced = row.last_synced_at is not None and row.dirty_generation == row.synced_generation
        return synced and not world.marks_waiting()

    await wait_until(idle)


async def three_meetings(world: World) -> list[str]:
    """Three meetings tomorrow, shown to the workforce system, the bridge idle; their item ids."""
    await ready(world)
    items = [world.outlook(f"Meeting {hour}", start=hour, end=hour + 0.5) for hour in (8, 9, 10)]
    await world.changes(3)
    return items
