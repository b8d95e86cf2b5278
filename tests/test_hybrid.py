"""End to end, hybrid: Exchange Online (the Graph emulator) and an on-premises server (the EWS emulator) in one
deployment. Everything above the sources must treat an on-premises mailbox like an online one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlmodel import select

from bridge.store import MailboxRow, MailboxStatus
from bridge.store.work import mark_dirty
from tests.world import ONPREM_MAILBOX, SERVICE_ACCOUNT, World, at, moment, onprem_exchange, ready, wait_until


async def streaming(world: World) -> None:
    """The online mailbox subscribed and synced, the on-premises one watched by a connected stream."""
    await ready(world)
    await wait_until(lambda: any(s["connected"] for s in onprem_exchange(world).subscriptions()))


async def test_an_onprem_change_reaches_the_workforce_system_mapped_like_an_online_one(hybrid: World) -> None:
    await streaming(hybrid)
    onprem_exchange(hybrid).create_item_as_outlook(
        ONPREM_MAILBOX, subject="Customer visit", start=moment(1, 9), end=moment(1, 10), free_busy="Busy"
    )
    hybrid.graph.create_event_as_outlook(
        hybrid.mailbox, {"subject": "Customer visit", "start": at(1, 9), "end": at(1, 10), "showAs": "busy"}
    )

    changes = await hybrid.changes(2)

    by_person = {change["workforce_id"]: change for change in changes}
    assert set(by_person) == {"E1001", "E2001"}
    online, onprem = by_person["E1001"]["appointment"], by_person["E2001"]["appointment"]
    assert {key: online[key] for key in online if key != "id"} == {key: onprem[key] for key in onprem if key != "id"}
    assert onprem["template"] == "meeting"
    assert by_person["E2001"]["mailbox"] == ONPREM_MAILBOX


async def test_a_relayed_create_reaches_the_ews_calendar_without_echo(hybrid: World) -> None:
    await streaming(hybrid)
    body = {"template": "absence", "start": moment(3, 0).isoformat(), "end": moment(4, 0).isoformat()}

    status, created, _ = await hybrid.api("POST", f"/api/v1/mailboxes/{ONPREM_MAILBOX}/appointments", body)

    assert status == 201
    [item] = onprem_exchange(hybrid).items(ONPREM_MAILBOX)
    assert item["showAs"] == "oof"
    assert item["changeKey"] == created["version"]
    assert await hybrid.settled() == []


async def test_a_cut_stream_is_reopened_and_nothing_is_missed(hybrid: World) -> None:
    await streaming(hybrid)
    assert onprem_exchange(hybrid).cut_streaming_connections() >= 1
    # Made while no stream listens: only the catch-up after the reconnect can bring it.
    onprem_exchange(hybrid).create_item_as_outlook(
        ONPREM_MAILBOX, subject="Night shift", start=moment(2, 22), end=moment(2, 23), free_busy="OOF"
    )

    [change] = await hybrid.changes(1)

    assert change["appointment"]["subject"] == "Night shift"
    assert change["appointment"]["template"] == "absence"
    await wait_until(lambda: any(s["connected"] for s in onprem_exchange(hybrid).subscriptions()))


def mark_onprem_dirty(world: World) -> None:
    with world.service.db.session() as session:
        row = session.exec(select(MailboxRow).where(MailboxRow.address == ONPREM_MAILBOX)).one()
        assert row.id is not None
        mark_dirty(session, [row.id], datetime.now(UTC))


def onprem_row(world: World) -> MailboxRow:
    with world.service.db.session() as session:
        return session.exec(select(MailboxRow).where(MailboxRow.address == ONPREM_MAILBOX)).one()


async def test_an_onprem_mailbox_that_disappears_is_disabled_with_the_reason(hybrid: World) -> None:
    await streaming(hybrid)
    onprem_exchange(hybrid).remove_mailbox(ONPREM_MAILBOX)
    mark_onprem_dirty(hybrid)

    await wait_until(lambda: onprem_row(hybrid).status == MailboxStatus.DISABLED)

    assert "ErrorNonExistentMailbox" in (onprem_row(hybrid).status_reason or "")
    assert hybrid.mailbox_row().status == MailboxStatus.ACTIVE  # the online mailbox goes on


async def test_impersonation_denied_disables_the_mailbox(hybrid: World) -> None:
    await streaming(hybrid)
    onprem_exchange(hybrid).set_impersonation(SERVICE_ACCOUNT[0], False)
    mark_onprem_dirty(hybrid)

    await wait_until(lambda: onprem_row(hybrid).status == MailboxStatus.DISABLED)

    assert "ErrorImpersonateUserDenied" in (onprem_row(hybrid).status_reason or "")


async def test_refused_credentials_mark_the_source_auth_failed_while_the_bridge_stays_ready(hybrid: World) -> None:
    await streaming(hybrid)
    onprem_exchange(hybrid).add_service_account(SERVICE_ACCOUNT[0], "a-changed-password")
    mark_onprem_dirty(hybrid)

    async def onprem_state() -> tuple[int, Any]:
        status, body, _ = await hybrid.api("GET", "/readyz")
        return status, body

    deadline = asyncio.get_running_loop().time() + 15
    status, body = await onprem_state()
    while body["sources"]["onprem"]["state"] == "ok" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        status, body = await onprem_state()

    # The online source still works: degraded, not unavailable.
    assert (status, body["status"]) == (200, "degraded")
    assert body["sources"]["onprem"]["state"] == "auth_failed"
    assert body["sources"]["onprem"]["since"] is not None
    assert onprem_row(hybrid).status == MailboxStatus.ACTIVE  # credentials are the source's problem, not the mailbox's


async def test_relayed_changes_and_deletes_reach_the_ews_calendar(hybrid: World) -> None:
    await streaming(hybrid)
    path = f"/api/v1/mailboxes/{ONPREM_MAILBOX}/appointments"
    body = {"template": "meeting", "start": moment(2, 9).isoformat(), "end": moment(2, 10).isoformat()}
    _, created, _ = await hybrid.api("POST", path, body)

    status, changed, _ = await hybrid.api(
        "PATCH", f"{path}/{created['id']}", {"template": "remote"}, {"If-Match": created["version"]}
    )
    assert status == 200
    [item] = onprem_exchange(hybrid).items(ONPREM_MAILBOX)
    assert (item["showAs"], item["changeKey"]) == ("workingElsewhere", changed["version"])

    stale = await hybrid.api("DELETE", f"{path}/{created['id']}", None, {"If-Match": created["version"]})
    deleted = await hybrid.api("DELETE", f"{path}/{created['id']}", None, {"If-Match": changed["version"]})

    assert (stale[0], deleted[0]) == (412, 204)
    assert onprem_exchange(hybrid).items(ONPREM_MAILBOX) == []
    assert await hybrid.settled() == []
