"""A source's Entra ID group is its roster: members (nested groups too, every page) are enrolled, those who leave
are removed, end to end through msgraph-sdk and the Graph emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

from bridge import roster
from bridge.cli import main
from bridge.domain import DirectoryMember
from bridge.group_roster import member_rows
from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.templates import default_mapping_path, load_mapping
from tests.world import ADMIN_TOKEN, TEAM_GROUP, World, at, ready, wait_until

SYNC = "/api/v1/admin/sources/online/group/sync"


def mailboxes(world: World) -> dict[str, tuple[str | None, str, str | None]]:
    with world.service.db.session() as session:
        return {
            row.address: (row.workforce_id, row.status.value, row.enrolled_by)
            for row in session.exec(select(MailboxRow)).all()
        }


def staff(world: World, count: int, prefix: str = "p") -> list[str]:
    """`count` users with a mailbox and an employee id (E-prefix-n); their addresses."""
    return [
        world.graph.add_user(f"{prefix}{n}@contoso.com", employee_id=f"E-{prefix}{n}").user_principal_name
        for n in range(count)
    ]


async def a_team_of_two_pages_with_a_nested_group(world: World) -> tuple[list[str], list[str]]:
    direct, nested = staff(world, 3), staff(world, 2, prefix="n")
    inner = world.graph.add_group("Team Berlin", nested)
    world.graph.add_group_members(TEAM_GROUP, [*direct, inner.id])
    world.graph.faults.directory_page = 4  # Graph pages below $top when it likes: 6 objects, 2 pages
    return direct, nested


async def shown(world: World, subject: str, change: str) -> dict[str, Any]:
    def found() -> bool:
        return any(c["type"] == change and c["appointment"].get("subject") == subject for c in world.workforce.changes)

    await wait_until(found)
    return next(c for c in world.workforce.changes if c["appointment"].get("subject") == subject)


async def test_members_across_pages_and_nested_groups_are_enrolled_and_synced(group_world: World) -> None:
    world = group_world
    await ready(world)
    direct, nested = await a_team_of_two_pages_with_a_nested_group(world)
    world.graph.create_event_as_outlook(nested[1], {"subject": "Offsite", "start": at(1, 9), "end": at(1, 17)})

    planned = await world.service.groups.sync("online")

    assert sorted(e.address for e in planned.added) == sorted([*direct, *nested])
    assert mailboxes(world)["n1@contoso.com"] == ("E-n1", "active", "group")
    change = await shown(world, "Offsite", "appointment.created")
    assert change["workforce_id"] == "E-n1"
    assert mailboxes(world)["adelev@contoso.com"][2] is None  # configured by hand: not the group's


async def test_a_member_who_leaves_is_removed_with_their_appointments_and_comes_back(group_world: World) -> None:
    world = group_world
    await ready(world)
    direct, _ = await a_team_of_two_pages_with_a_nested_group(world)
    world.graph.create_event_as_outlook(direct[0], {"subject": "Review", "start": at(1, 9), "end": at(1, 10)})
    await world.service.groups.sync("online")
    await shown(world, "Review", "appointment.created")

    world.graph.remove_group_members(TEAM_GROUP, [direct[0]])
    planned = await world.service.groups.sync("online")

    assert [e.address for e in planned.removed] == [direct[0]]
    assert mailboxes(world)[direct[0]][1:] == ("disabled", "group")
    await shown(world, "Review", "appointment.deleted")
    world.graph.add_group_members(TEAM_GROUP, [direct[0]])
    again = await world.service.groups.sync("online")
    assert [e.address for e in again.reenabled] == [direct[0]]
    await wait_until(
        lambda: (
            [c["type"] for c in world.workforce.changes if c["appointment"].get("subject") == "Review"]
            == ["appointment.created", "appointment.deleted", "appointment.created"]
        )
    )


async def test_a_dry_run_lists_what_would_change_and_changes_nothing(group_world: World) -> None:
    world = group_world
    await ready(world)
    direct, _ = await a_team_of_two_pages_with_a_nested_group(world)
    await world.service.groups.sync("online")
    world.graph.remove_group_members(TEAM_GROUP, [direct[2]])
    world.graph.add_group_members(TEAM_GROUP, staff(world, 1, prefix="new"))
    before = mailboxes(world)

    status, body, _ = await world.api("POST", SYNC, {"dry_run": True}, token=ADMIN_TOKEN)

    assert status == 200
    assert (body["added"], body["removed"], body["dry_run"]) == (["new0@contoso.com"], [direct[2]], True)
    assert mailboxes(world) == before


async def test_members_with_a_problem_are_skipped_with_the_reason_and_the_rest_enrolled(group_world: World) -> None:
    world = group_world
    await ready(world)
    world.graph.add_user("twin1@contoso.com", employee_id="E-twin")
    world.graph.add_user("twin2@contoso.com", employee_id="E-twin")
    world.graph.add_user("noid@contoso.com")
    world.graph.add_user("onprem@contoso.com", employee_id="E-onprem", has_mailbox=False)
    world.graph.add_user("held@contoso.com", employee_id="E1001")  # Adele's, who is active
    members = ["twin1@contoso.com", "twin2@contoso.com", "noid@contoso.com", "onprem@contoso.com"]
    world.graph.add_group_members(TEAM_GROUP, [*members, "held@contoso.com", *staff(world, 1)])

    status, body, _ = await world.api("POST", SYNC, {}, token=ADMIN_TOKEN)

    assert status == 200
    assert body["added"] == ["p0@contoso.com", "twin1@contoso.com"]
    reasons = {item["name"]: item["reason"] for item in body["skipped"]}
    assert reasons["member noid@contoso.com"] == "the workforce id is missing"
    assert reasons["member twin2@contoso.com"] == "workforce id 'E-twin' is listed already (member twin1@contoso.com)"
    assert reasons["member held@contoso.com"].startswith("workforce id 'E1001' belongs to the active mailbox adelev")
    assert reasons["member onprem@contoso.com"].startswith("Exchange refuses onprem@contoso.com:")
    assert "has no Exchange Online mailbox" in reasons["member onprem@contoso.com"]
    assert set(mailboxes(world)) == {"adelev@contoso.com", "p0@contoso.com", "twin1@contoso.com"}


async def test_a_source_without_a_group_is_404(world: World) -> None:
    status, body, _ = await world.api("POST", SYNC, {"dry_run": True}, token=ADMIN_TOKEN)

    assert (status, body["detail"]) == (404, "source online has no group (sources.online.group)")


async def test_the_command_line_syncs_the_group_or_only_shows_it(group_world: World) -> None:
    world = group_world
    await ready(world)
    world.graph.add_group_members(TEAM_GROUP, staff(world, 2))
    config = str(world.cli_config())

    dry = await asyncio.to_thread(run_cli, ["mailboxes", "sync-group", "online", "--dry-run", "--config", config])
    assert set(mailboxes(world)) == {"adelev@contoso.com"}
    done = await asyncio.to_thread(run_cli, ["mailboxes", "sync-group", "online", "--config", config])

    assert dry == (
        0,
        "add    p0@contoso.com  E-p0  online\nadd    p1@contoso.com  E-p1  online\n"
        "2 would be added, 0 re-enabled, 0 updated, 0 removed; 0 skipped; 0 unchanged\n",
    )
    assert done == (
        0,
        "add    p0@contoso.com  E-p0  online\nadd    p1@contoso.com  E-p1  online\n"
        "2 were added, 0 re-enabled, 0 updated, 0 removed; 0 skipped; 0 unchanged\n",
    )
    assert mailboxes(world)["p1@contoso.com"] == ("E-p1", "active", "group")


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


async def test_a_group_that_cannot_be_read_changes_nothing(group_world: World) -> None:
    world = group_world
    await ready(world)
    world.graph.add_group_members(TEAM_GROUP, staff(world, 1))
    await world.service.groups.sync("online")
    app = next(iter(world.graph.state.apps))
    world.graph.grant(app, ["Calendars.ReadWrite", "Mail.Send"])
    world.graph.expire_tokens()  # the next token carries the roles granted now
    before = mailboxes(world)

    status, body, _ = await world.api("POST", SYNC, {}, token=ADMIN_TOKEN)

    assert status == 503
    assert "GroupMember.Read.All" in body["detail"]
    assert mailboxes(world) == before


def test_members_without_a_mail_address_are_left_out_and_said_so() -> None:
    members = [
        DirectoryMember("1", None, {"userPrincipalName": "svc@contoso.com", "employeeId": "E9"}),
        DirectoryMember("2", "b@contoso.com", {"employeeId": None, "mail": "b@contoso.com"}),
        DirectoryMember("3", "a@contoso.com", {"employeeId": "E1", "mail": "a@contoso.com"}),
    ]

    rows, without = member_rows(members, "employeeId")

    assert rows == [
        roster.RosterRow("member a@contoso.com", "a@contoso.com", "E1"),
        roster.RosterRow("member b@contoso.com", "b@contoso.com", ""),
    ]
    assert without == ["member svc@contoso.com: no mail address, so no mailbox; left out"]


@pytest.mark.parametrize("attribute", ["mail", "id"])
def test_the_workforce_id_comes_from_the_configured_attribute(attribute: str) -> None:
    member = DirectoryMember("guid-1", "a@contoso.com", {"mail": "a@contoso.com", "id": "guid-1", "employeeId": None})

    rows, _ = member_rows([member], attribute)

    assert rows[0].workforce_id == {"mail": "a@contoso.com", "id": "guid-1"}[attribute]


def test_a_mailbox_disabled_by_hand_is_not_enabled_again_by_the_group(db: Database) -> None:
    from bridge import admin

    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    with db.session() as session:
        admin.add_mailbox(session, "a@contoso.com", "E1", "online", now)
        admin.disable(session, "a@contoso.com", "on leave")
        planned = roster.plan_group(
            session, "online", [roster.RosterRow("member a@contoso.com", "a@contoso.com", "E1")]
        )

    assert (planned.reenabled, planned.skipped) == (
        [],
        ["member a@contoso.com: a@contoso.com is disabled (on leave); left as it is"],
    )
    with db.session() as session:
        assert session.exec(select(MailboxRow.status)).one() == MailboxStatus.DISABLED


async def test_check_reads_the_group_as_the_bridge_will(group_world: World) -> None:
    world = group_world
    world.graph.add_group_members(TEAM_GROUP, [*staff(world, 2), world.graph.add_group("Empty").id])

    code, out = await asyncio.to_thread(run_cli, ["check", "--config", str(world.cli_config())])

    assert code == 0, out
    assert f"group {TEAM_GROUP}: 2 users, 2 with a mail address" in out


def test_a_mailbox_added_by_hand_after_the_group_removed_it_is_the_administrators(db: Database) -> None:
    from bridge import admin

    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    member = roster.RosterRow("member a@contoso.com", "a@contoso.com", "E1")
    with db.session() as session:
        roster.apply(session, roster.plan_group(session, "online", [member]), now)
        removed = roster.plan_group(session, "online", [])
        admin.remove(session, "a@contoso.com", load_mapping(default_mapping_path()), now, reason=roster.LEFT_GROUP)
        admin.add_mailbox(session, "a@contoso.com", "E1", "online", now)

        assert [e.address for e in removed.removed] == ["a@contoso.com"]
        assert roster.plan_group(session, "online", []).removed == []
