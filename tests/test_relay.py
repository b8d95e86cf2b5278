"""End to end: the workforce system's commands → the bridge's REST API → the relay → the Graph emulator.

The bridge runs whole (service, sync, delivery, subscriptions) so that every write also comes back to it as a
notification and a delta item, and the workforce receiver shows whether any of it was echoed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from bridge.store import CommandKind, CommandRow, CommandStatus, Database, MailboxRow, MailboxStatus
from bridge.store.commands import Draft, accept
from bridge.store.work import claim_mailbox
from tests.world import API_TOKEN, World, at, ready

APPOINTMENTS = "/api/v1/mailboxes/{}/appointments"


def instant(days: int, hour: float) -> str:
    moment = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stored(world: World) -> list[dict[str, Any]]:
    return world.graph.events(world.mailbox)


def commands(world: World) -> list[CommandRow]:
    with world.service.db.session() as session:
        return list(session.exec(select(CommandRow)).all())


async def create(
    world: World, template: str = "meeting", headers: dict[str, str] | None = None, **fields: Any
) -> tuple[int, Any, dict[str, str]]:
    body = {"template": template, "start": instant(1, 9), "end": instant(1, 10), **fields}
    return await world.api("POST", APPOINTMENTS.format(world.mailbox), body, headers)


async def test_a_create_reaches_exchange_with_the_template_s_state_and_is_not_echoed(world: World) -> None:
    await ready(world)
    status, body, headers = await create(world, "remote", subject="Home office")

    assert status == 201
    [event] = stored(world)
    assert event["showAs"] == "workingElsewhere"
    assert event["subject"] == "Home office"
    assert event["id"] == body["exchange_id"]
    assert body["version"] == event["changeKey"]
    assert body["template"] == "remote"
    assert headers["Location"].endswith(f"/appointments/{body['id']}")
    assert await world.settled() == []  # the write's notification and delta item were recognised

    status, listed, _ = await world.api("GET", APPOINTMENTS.format(world.mailbox))
    [held] = listed["appointments"]
    assert (held["id"], held["origin"], held["template"]) == (event["id"], "bridge", "remote")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite has one writer at a time anyway
async def test_a_command_does_not_wait_for_a_sync_commit_of_its_mailbox(world: World) -> None:
    """A sync commit holds its mailbox's row locked while it writes; a command for that mailbox does not wait for it
    (with FOR UPDATE it did: inserting the command row takes FOR KEY SHARE on the mailbox through the foreign key)."""
    await ready(world)
    mailbox = world.mailbox_row()
    assert mailbox.id is not None
    with Session(world.service.db.engine) as sync:
        # What a sync commit holds until it ends: the mailbox's row, locked as claiming and committing lock it.
        claim = claim_mailbox(sync, mailbox.id, "another instance", datetime.now(UTC), lease=timedelta(minutes=1))
        assert claim is not None
        sync.flush()
        async with asyncio.timeout(10):
            status, body, _ = await create(world, "remote")
        sync.rollback()

    assert status == 201, body
    assert [event["id"] for event in stored(world)] == [body["exchange_id"]]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite has one writer at a time anyway
def test_a_request_racing_one_with_the_same_key_waits_for_it_and_replays_it(db: Database) -> None:
    """Two requests with one key at once: the second waits for the first's transaction and finds its command (it
    must neither store a second command nor fail on the key's unique constraint)."""
    now = datetime.now(UTC)

    def draft(command_id: str) -> Draft:
        payload = {"to": ["bob@contoso.com"], "subject": "Hi", "body": "text", "content_type": "text"}
        return Draft(id=command_id, scope="mail", kind=CommandKind.MAIL, idempotency_key="race-1", payload=payload)

    def second() -> tuple[str, bool]:
        with db.session() as session:
            accepted = accept(session, draft("second"), "test", now)
            return accepted.row.id, accepted.new

    with ThreadPoolExecutor(max_workers=1) as pool:
        with db.session() as session:
            accept(session, draft("first"), "test", now)
            session.flush()
            racing = pool.submit(second)
            with pytest.raises(FutureTimeout):
                racing.result(timeout=0.5)  # waiting for the first to commit
        assert racing.result(timeout=5) == ("first", False)
    with db.session() as session:
        assert [row.id for row in session.exec(select(CommandRow)).all()] == ["first"]


async def test_a_person_s_later_change_to_a_bridge_appointment_is_emitted(world: World) -> None:
    await ready(world)
    _, body, _ = await create(world, "meeting")
    assert await world.settled() == []

    world.graph.update_event_as_outlook(world.mailbox, body["exchange_id"], {"start": at(1, 11), "end": at(1, 12)})
    [change] = await world.changes(1)

    assert change["type"] == "appointment.updated"
    assert change["appointment"]["id"] == body["exchange_id"]
    assert change["appointment"]["start"] == instant(1, 11)


async def test_a_retried_create_with_the_same_key_creates_once_and_answers_the_same(world: World) -> None:
    await ready(world)
    key = {"Idempotency-Key": "absence-4711"}
    body = {"template": "absence", "start": instant(2, 0), "end": instant(3, 0)}
    first = await world.api("POST", APPOINTMENTS.format(world.mailbox), body, key)
    again = await world.api("POST", APPOINTMENTS.format(world.mailbox), body, key)

    assert first[0] == again[0] == 201
    assert first[1] == again[1]
    [event] = stored(world)
    assert event["transactionId"] == "absence-4711"
    assert event["isAllDay"] is True

    other = await world.api("POST", APPOINTMENTS.format(world.mailbox), {**body, "end": instant(4, 0)}, key)
    assert other[0] == 422
    assert other[1]["invalid_params"][0]["name"] == "Idempotency-Key"
    assert len(stored(world)) == 1


async def test_a_create_graph_throttled_is_retried_by_the_sdk_and_made_once(world: World) -> None:
    await ready(world)
    world.graph.throttle(1, route="events", retry_after=1)
    status, _body, _ = await create(world, "meeting", headers={"Idempotency-Key": "meeting-1"})

    assert status == 201
    assert len(stored(world)) == 1
    posts = [e for e in world.graph.stats()["log"] if e["method"] == "POST" and e["route"] == "events"]
    assert [e["status"] for e in posts] == [429, 201]
    assert await world.settled() == []


async def test_update_with_the_current_version_changes_exchange_without_echo(world: World) -> None:
    await ready(world)
    _, created, _ = await create(world, "meeting")
    path = f"{APPOINTMENTS.format(world.mailbox)}/{created['id']}"

    missing = await world.api("PATCH", path, {"template": "tentative"})
    assert missing[0] == 428
    status, body, _ = await world.api("PATCH", path, {"template": "tentative"}, {"If-Match": created["version"]})

    assert status == 200
    [event] = stored(world)
    assert event["showAs"] == "tentative"
    assert body["version"] == event["changeKey"] != created["version"]
    assert body["template"] == "tentative"
    assert await world.settled() == []


async def test_a_stale_version_gets_412_with_the_current_state_and_changes_nothing(world: World) -> None:
    await ready(world)
    _, created, _ = await create(world, "meeting")
    world.graph.update_event_as_outlook(world.mailbox, created["exchange_id"], {"subject": "Moved by Adele"})
    path = f"{APPOINTMENTS.format(world.mailbox)}/{created['exchange_id']}"

    status, body, _ = await world.api("PATCH", path, {"template": "absence"}, {"If-Match": created["version"]})

    assert status == 412
    [event] = stored(world)
    assert event["showAs"] == "busy"
    assert body["current"]["subject"] == "Moved by Adele"
    assert body["current"]["version"] == event["changeKey"]
    deleted = await world.api("DELETE", path, None, {"If-Match": created["version"]})
    assert deleted[0] == 412
    assert len(stored(world)) == 1


async def test_an_invitation_is_neither_changed_nor_deleted(world: World) -> None:
    await ready(world)
    invitation = world.outlook("Board meeting", isOrganizer=False)
    [change] = await world.changes(1)
    path = f"{APPOINTMENTS.format(world.mailbox)}/{invitation}"
    version = world.graph.events(world.mailbox)[0]["changeKey"]

    patched = await world.api("PATCH", path, {"template": "absence"}, {"If-Match": version})
    deleted = await world.api("DELETE", path, None, {"If-Match": version})

    assert patched[0] == deleted[0] == 409
    assert "invitation" in patched[1]["detail"]
    [event] = stored(world)
    assert (event["showAs"], event["changeKey"]) == ("busy", version)
    assert change["appointment"]["id"] == invitation


async def test_delete_removes_the_appointment_without_echo(world: World) -> None:
    await ready(world)
    _, created, _ = await create(world, "meeting")
    path = f"{APPOINTMENTS.format(world.mailbox)}/{created['id']}"

    status, _, _ = await world.api("DELETE", path, None, {"If-Match": f'W/"{created["version"]}"'})

    assert status == 204
    assert stored(world) == []
    assert await world.settled() == []
    _, listed, _ = await world.api("GET", APPOINTMENTS.format(world.mailbox))
    assert listed["appointments"] == []


async def test_the_current_state_replaces_the_previous_one(world: World) -> None:
    await ready(world)
    path = f"/api/v1/mailboxes/{world.mailbox}/state"
    first = await world.api("PUT", path, {"template": "meeting"})
    until = instant(0, 23.5) if datetime.now(UTC).hour < 23 else instant(1, 1)
    second = await world.api("PUT", path, {"template": "remote", "until": until})

    assert first[0] == second[0] == 200
    assert second[1]["replaced"] == first[1]["exchange_id"]
    [event] = stored(world)
    assert event["id"] == second[1]["exchange_id"]
    assert event["showAs"] == "workingElsewhere"
    assert second[1]["end"] == until
    assert await world.settled() == []


async def test_mail_is_sent_from_the_configured_sender(world: World) -> None:
    status, body, _ = await world.api(
        "POST",
        "/api/v1/mail",
        {"to": ["bob@contoso.com"], "cc": [], "subject": "Absence", "body": "<p>Away</p>", "content_type": "html"},
    )

    assert status == 202
    [mail] = world.graph.sent_mail()
    assert mail["from"].lower() == world.mailbox.lower() == body["sender"].lower()
    assert mail["message"]["subject"] == "Absence"
    assert mail["message"]["body"] == {"contentType": "html", "content": "<p>Away</p>"}
    assert mail["message"]["toRecipients"] == [{"emailAddress": {"address": "bob@contoso.com"}}]


async def test_purge_removes_only_what_the_bridge_made(world: World) -> None:
    await ready(world)
    own = world.outlook("Lunch")
    await world.changes(1)
    await create(world, "meeting")
    await create(world, "absence", start=instant(5, 0), end=instant(6, 0))
    path = f"/api/v1/mailboxes/{world.mailbox}/bridge-items"

    status, preview, _ = await world.api("DELETE", f"{path}?dry_run=true")
    assert status == 200
    assert (preview["dry_run"], len(preview["items"])) == (True, 2)
    assert len(stored(world)) == 3

    status, purged, _ = await world.api("DELETE", path)
    assert (status, purged["deleted"]) == (200, 2)
    assert [event["id"] for event in stored(world)] == [own]
    assert len(await world.settled()) == 1  # only the person's own lunch, from before


async def test_a_recurring_create_enters_the_mirror_without_echo(world: World) -> None:
    await ready(world)
    until = (date.today() + timedelta(days=7)).isoformat()
    status, _, _ = await create(world, "remote", recurrence={"pattern": "daily", "until": until})

    assert status == 201
    [master] = stored(world)
    assert master["type"] == "seriesMaster"
    assert master["recurrence"]["range"]["endDate"] == until

    assert await world.settled() == []
    _, listed, _ = await world.api("GET", APPOINTMENTS.format(world.mailbox))
    assert len(listed["appointments"]) == 7
    assert {held["origin"] for held in listed["appointments"]} == {"bridge"}


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(world: World) -> None:
    await ready(world)
    beyond = (date.today() + timedelta(days=200)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"template": "holiday"}, "template"),
        ({"end": instant(1, 8)}, "end"),
        ({"recurrence": {"pattern": "daily", "until": beyond}}, "recurrence.until"),
        ({"recurrence": {"pattern": "weekly", "until": instant(3, 0)[:10]}}, "recurrence.days_of_week"),
        ({"start": "tomorrow"}, "start"),
        ({"colour": "red"}, "colour"),
        ({"subject": "x" * 256}, "subject"),
    ]
    for fields, name in cases:
        status, body, _ = await create(world, **fields)
        assert status == 400, fields
        assert name in [item["name"] for item in body["invalid_params"]], fields

    too_large = await create(world, body="x" * 70_000)
    unknown = await world.api("POST", APPOINTMENTS.format("nobody@contoso.com"), {"template": "meeting"})
    bad_key = await create(world, headers={"Idempotency-Key": "has space"})
    assert too_large[0] == 413
    assert unknown[0] == 400  # the body is checked before the mailbox
    assert bad_key[0] == 400
    assert stored(world) == []
    assert commands(world) == []


async def test_unknown_and_disabled_mailboxes_are_refused(world: World) -> None:
    await ready(world)
    unknown = await world.api(
        "POST",
        APPOINTMENTS.format("nobody@contoso.com"),
        {"template": "meeting", "start": instant(1, 9), "end": instant(1, 10)},
    )
    with world.service.db.session() as session:
        row = session.get_one(MailboxRow, world.mailbox_row().id)
        row.status, row.status_reason = MailboxStatus.DISABLED, "left the company"
    disabled = await create(world, "meeting")

    assert unknown[0] == 404
    assert disabled[0] == 409
    assert "left the company" in disabled[1]["detail"]
    assert stored(world) == []
    assert commands(world) == []


async def test_a_command_stored_but_never_sent_is_finished_after_a_restart(world: World) -> None:
    await ready(world)
    mailbox = world.mailbox_row()
    # As the API stores it: an all-day appointment's start and end are dates.
    request = {"template": "absence", "start": instant(3, 0)[:10], "end": instant(4, 0)[:10], "all_day": True}
    draft = Draft(
        id="11111111-2222-3333-4444-555555555555",
        mailbox_id=mailbox.id,
        scope=mailbox.address,
        kind=CommandKind.CREATE,
        idempotency_key="crash-1",
        payload={"request": request},
        transaction_id="crash-1",
    )
    with world.service.db.session() as session:  # what a process that died right after storing left behind
        accept(session, draft, world.service.owner, datetime.now(UTC) - timedelta(seconds=1))

    assert await world.service.relay.recover() == 1
    assert await world.service.relay.recover() == 0
    [event] = stored(world)
    assert event["showAs"] == "oof"
    [command] = commands(world)
    assert (command.status, command.http_status, command.item_id) == (CommandStatus.DONE, 201, event["id"])
    retried = await world.api("POST", APPOINTMENTS.format(world.mailbox), request, {"Idempotency-Key": "crash-1"})
    assert (retried[0], retried[1]["exchange_id"]) == (201, event["id"])
    assert await world.settled() == []


async def test_a_create_sent_but_not_recorded_is_not_made_twice(world: World) -> None:
    await ready(world)
    _, created, _ = await create(world, "meeting", headers={"Idempotency-Key": "lost-answer"})
    with world.service.db.session() as session:  # as if the process died before recording Exchange's answer
        row = session.exec(select(CommandRow)).one()
        row.status, row.http_status, row.result = CommandStatus.SENDING, None, None
        row.updated_at = datetime.now(UTC) - timedelta(seconds=1)

    assert await world.service.relay.recover() == 1
    [event] = stored(world)
    [command] = commands(world)
    assert command.status == CommandStatus.DONE
    assert command.item_id == event["id"] == created["exchange_id"]


async def test_mail_interrupted_while_sending_is_reported_not_sent_twice(world: World) -> None:
    await ready(world)  # by then the service's own pass over interrupted commands has run
    draft = Draft(
        id="mail-0000-0000-0000-000000000000",
        scope="mail",
        kind=CommandKind.MAIL,
        idempotency_key="mail-1",
        payload={"to": ["bob@contoso.com"], "subject": "Hi", "body": "text", "content_type": "text"},
    )
    with world.service.db.session() as session:
        accept(session, draft, world.service.owner, datetime.now(UTC) - timedelta(seconds=1))

    assert await world.service.relay.recover() == 1
    [command] = commands(world)
    assert (command.status, command.http_status) == (CommandStatus.FAILED, 502)
    assert world.graph.sent_mail() == []
    status, body, _ = await world.api("GET", f"/api/v1/commands/{command.id}")
    assert (status, body["status"]) == (200, "failed")
    assert "not sent again" in body["error"]


async def test_no_token_or_mail_body_reaches_the_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_text = "Salary review for Bob: confidential"
    status, _, _ = await world.api(
        "POST", "/api/v1/mail", {"to": ["bob@contoso.com"], "subject": "Review", "body": secret_text}
    )
    await create(world, "meeting", body=secret_text)

    assert status == 202
    assert caplog.records  # the bridge and its HTTP clients did log at DEBUG
    assert secret_text not in caplog.text
    assert API_TOKEN not in caplog.text


async def test_a_command_past_retention_is_forgotten_unless_it_names_an_appointment_still_ahead(world: World) -> None:
    await ready(world)
    soon_key = {"Idempotency-Key": "meeting-soon"}
    _, soon, _ = await create(world, "meeting", soon_key)  # tomorrow
    _, later, _ = await create(world, "meeting", start=instant(20, 9), end=instant(20, 10))
    _, moved, _ = await create(world, "meeting", start=instant(1, 11), end=instant(1, 12))
    path = f"{APPOINTMENTS.format(world.mailbox)}/{moved['id']}"
    change = {"start": instant(20, 11), "end": instant(20, 12)}
    assert (await world.api("PATCH", path, change, {"If-Match": moved["version"]}))[0] == 200

    world.clock.offset = timedelta(days=10)  # tomorrow's meeting ended longer ago than the retention (7 days)
    await world.service.retention.prune()

    assert (await world.api("GET", f"/api/v1/commands/{soon['id']}"))[0] == 404
    assert {row.id for row in commands(world)} == {later["id"], moved["id"]}  # their appointments are still ahead
    path = f"{APPOINTMENTS.format(world.mailbox)}/{later['id']}"
    assert (await world.api("PATCH", path, {"template": "tentative"}, {"If-Match": later["version"]}))[0] == 200
    status, again, _ = await create(world, "meeting", soon_key)
    assert status == 201
    assert again["id"] != soon["id"]  # a new command: the key was forgotten with the old one
    assert again["exchange_id"] == soon["exchange_id"]  # Exchange knows its transaction id: still one event
    assert len(stored(world)) == 3
