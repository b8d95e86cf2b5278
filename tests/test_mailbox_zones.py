"""Every mailbox's time zone: read from Exchange (Graph mailboxSettings) or the source's default, kept, and read
again a day later, with the real msgraph-sdk against the Graph emulator and exchangelib against the EWS one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bridge.mailbox_zones import MailboxZones
from bridge.sources.graph import GraphSource
from bridge.store import Database, MailboxRow, MailboxStatus
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.world import ONPREM_MAILBOX, World, wait_until

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def enrol(db: Database, address: str, status: MailboxStatus = MailboxStatus.ACTIVE) -> None:
    with db.session() as session:
        session.add(MailboxRow(address=address, workforce_id="E1", source="online", status=status))


def zone_of(db: Database, address: str) -> tuple[str | None, datetime | None]:
    with db.session() as session:
        row = session.exec(select(MailboxRow).where(MailboxRow.address == address.lower())).one()
        return row.time_zone, row.time_zone_read_at


def choose_zone(graph_emulator: GraphEmulator, user: DirectoryUser, zone: str) -> None:
    """What the user does in Outlook's settings (Graph keeps the name as chosen: here a Windows id)."""
    graph_emulator.state.mailbox_for(user.user_principal_name, None).time_zone = zone


async def test_a_graph_mailbox_takes_the_zone_its_owner_chose_as_an_iana_name(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator, adele: DirectoryUser
) -> None:
    enrol(db, adele.user_principal_name)
    choose_zone(graph_emulator, adele, "Pacific Standard Time")

    assert await MailboxZones(db, {"online": online_source}, {}, clock=lambda: NOW).refresh() == 1

    assert zone_of(db, adele.user_principal_name) == ("America/Los_Angeles", NOW)


async def test_the_zones_of_many_mailboxes_are_each_stored_with_its_own(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    # More mailboxes than are stored to one transaction, in several zones.
    chosen = {
        f"user{n:02d}@contoso.com": ("Pacific Standard Time", "Europe/Berlin", "Tokyo Standard Time")[n % 3]
        for n in reversed(range(25))
    }
    for address, zone in chosen.items():
        choose_zone(graph_emulator, graph_emulator.add_user(address), zone)
        enrol(db, address)

    assert await MailboxZones(db, {"online": online_source}, {}, clock=lambda: NOW).refresh() == 25

    expected = {"Pacific Standard Time": "America/Los_Angeles", "Europe/Berlin": "Europe/Berlin"}
    expected["Tokyo Standard Time"] = "Asia/Tokyo"
    assert {address: zone_of(db, address) for address in chosen} == {
        address: (expected[zone], NOW) for address, zone in chosen.items()
    }


async def test_the_zone_is_read_again_a_day_later_and_not_before(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator, adele: DirectoryUser
) -> None:
    enrol(db, adele.user_principal_name)
    choose_zone(graph_emulator, adele, "Pacific Standard Time")
    now = NOW
    zones = MailboxZones(db, {"online": online_source}, {}, clock=lambda: now)
    await zones.refresh()
    choose_zone(graph_emulator, adele, "Europe/Berlin")  # moved to the Berlin office

    now = NOW + timedelta(hours=23)
    assert await zones.refresh() == 0
    assert zone_of(db, adele.user_principal_name)[0] == "America/Los_Angeles"
    now = NOW + timedelta(days=1, seconds=1)
    assert await zones.refresh() == 1
    assert zone_of(db, adele.user_principal_name)[0] == "Europe/Berlin"


async def test_without_the_mailbox_settings_permission_the_source_default_applies(
    db: Database,
    online_source: GraphSource,
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
) -> None:
    graph_emulator.grant(tenant_app.client_id, ["Calendars.ReadWrite", "Mail.Send", "User.Read.All"])
    enrol(db, adele.user_principal_name)
    choose_zone(graph_emulator, adele, "Pacific Standard Time")

    await MailboxZones(db, {"online": online_source}, {"online": "Europe/Berlin"}, clock=lambda: NOW).refresh()

    assert zone_of(db, adele.user_principal_name) == ("Europe/Berlin", NOW)


async def test_a_disabled_mailbox_is_not_asked(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator, adele: DirectoryUser
) -> None:
    enrol(db, adele.user_principal_name, MailboxStatus.DISABLED)

    assert await MailboxZones(db, {"online": online_source}, {}, clock=lambda: NOW).refresh() == 0
    assert zone_of(db, adele.user_principal_name) == (None, None)


async def test_an_on_premises_mailbox_is_in_its_source_s_zone(hybrid: World) -> None:
    onprem = next(name for name, source in hybrid.service.config.sources.items() if source.kind == "ews")
    zones = MailboxZones(hybrid.service.db, hybrid.service.sources, {onprem: "America/Los_Angeles"})
    # The service's own first pass (without that default) finishes first, so that it cannot overwrite this one's.
    await wait_until(lambda: zone_of(hybrid.service.db, ONPREM_MAILBOX)[1] is not None)
    await wait_until(lambda: zone_of(hybrid.service.db, hybrid.mailbox)[1] is not None)
    with hybrid.service.db.session() as session:
        for row in session.exec(select(MailboxRow)).all():
            row.time_zone_read_at = None

    await zones.refresh()

    assert zone_of(hybrid.service.db, ONPREM_MAILBOX)[0] == "America/Los_Angeles"
    assert zone_of(hybrid.service.db, hybrid.mailbox)[0] == "UTC"  # Graph: what Adele's settings say
