"""Notices to the administrator, end to end: the bridge on loopback, a chat webhook receiver and the Graph
emulator's sent mail, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bridge.admin import REMOVED, disable, enable, register
from bridge.cli import main
from bridge.config import Config, load_config
from bridge.domain import ChangeType
from bridge.notices import Notifier, current_problems
from bridge.store import Database, MailboxRow, MailboxStatus, OutboxRow, SourceRow, SourceStatus
from bridge.store.health import note_mailbox
from bridge.store.mapping_state import hold_mapping, record_applied
from bridge.store.models import NoticeMessageRow
from bridge.subscriptions import QUOTA_NOTE
from tests.conftest import ADELE, offline_config
from tests.world import NOTICE_RECIPIENT, SECRET, ChatReceiver, World, ready, three_meetings, wait_until


async def pause(world: World) -> None:
    """The mass-delete guard pauses the mailbox: its three appointments vanish in one read."""
    items = await three_meetings(world)
    for item in items:
        world.graph.delete_event_as_outlook(world.mailbox, item)
    await wait_until(lambda: world.mailbox_row().status is MailboxStatus.PAUSED)


def notice_mail(world: World) -> list[dict[str, Any]]:
    return [
        mail["message"]
        for mail in world.graph.sent_mail()
        if [r["emailAddress"]["address"] for r in mail["message"]["toRecipients"]] == [NOTICE_RECIPIENT]
    ]


async def test_a_paused_mailbox_is_announced_once_with_the_command_that_fixes_it(
    notified: World, chat: ChatReceiver
) -> None:
    await pause(notified)

    await wait_until(lambda: len(chat.messages) == 1)
    notice = chat.messages[0]
    enable_command = f"presence-bridge mailboxes enable {notified.mailbox.lower()} --config {notified.config_path}"
    assert [p["key"] for p in notice["problems"]] == [f"mailbox:{notified.mailbox.lower()}"]
    assert enable_command in notice["problems"][0]["fix"]
    assert "paused" in notice["text"]
    assert enable_command in notice["text"]
    await wait_until(lambda: len(notice_mail(notified)) == 1)
    assert notice_mail(notified)[0]["subject"] == notice["subject"]
    await asyncio.sleep(3)  # three more rounds: nothing new to say
    assert len(chat.messages) == 1


async def test_the_recovery_is_announced_once(notified: World, chat: ChatReceiver) -> None:
    await pause(notified)
    await wait_until(lambda: len(chat.messages) == 1)

    assert main(["mailboxes", "enable", notified.mailbox, "--config", str(notified.cli_config())]) == 0

    await wait_until(lambda: len(chat.messages) == 2)
    recovery = chat.messages[1]
    assert [r["key"] for r in recovery["resolved"]] == [f"mailbox:{notified.mailbox.lower()}"]
    assert (recovery["problems"], recovery["open"]) == ([], [])
    await wait_until(lambda: len(notice_mail(notified)) == 2)
    await asyncio.sleep(3)
    assert len(chat.messages) == 2


async def test_a_flapping_mailbox_makes_at_most_one_message_per_interval(notified: World, chat: ChatReceiver) -> None:
    await ready(notified)
    started = asyncio.get_running_loop().time()
    for _ in range(20):  # 20 changes of state in about 4 intervals
        with notified.service.db.session() as session:
            disable(session, notified.mailbox, "disabled by an administrator")
        await asyncio.sleep(0.1)
        with notified.service.db.session() as session:
            enable(session, notified.mailbox, notified.clock())
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.5)  # the end state (active) is seen and any open announcement resolved

    intervals = asyncio.get_running_loop().time() - started
    assert len(chat.messages) <= intervals + 1
    assert chat.messages == [] or chat.messages[-1]["open"] == []


async def test_a_notice_the_webhook_refused_arrives_once_it_answers_again(
    notified: World, chat: ChatReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    chat.fail(503)
    await pause(notified)
    await wait_until(lambda: chat.refused >= 2)  # tried, and tried again
    assert chat.messages == []

    chat.recover()

    await wait_until(lambda: len(chat.messages) == 1, within=20)
    assert [p["key"] for p in chat.messages[0]["problems"]] == [f"mailbox:{notified.mailbox.lower()}"]
    failures = [r for r in caplog.records if "could not be sent by webhook" in r.getMessage()]
    assert len(failures) == 1  # logged once however often it was retried
    assert "T0123-secret-part" not in caplog.text  # the webhook URL is a credential
    assert len(notice_mail(notified)) == 1  # mail worked all along: it was not sent twice


async def test_a_restart_does_not_announce_again(notified: World, chat: ChatReceiver) -> None:
    await pause(notified)
    await wait_until(lambda: len(chat.messages) == 1)
    await notified.restart()

    await asyncio.sleep(3)
    assert len(chat.messages) == 1
    assert len(notice_mail(notified)) == 1


# -- what counts as a problem (current_problems over the store's rows) ----------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    extra = f"""
        workforce: {{url: https://workforce.example.com/hooks, signing_secret: {SECRET}}}
        notify: {{webhook_url: "https://chat.example.com/hooks/T0123-secret-part", interval: PT1M}}
    """
    path = offline_config(tmp_path / "config.yaml", mailboxes=[ADELE], extra=extra)
    return load_config(path)


@pytest.fixture
def registered(db: Database, config: Config) -> Database:
    with db.session() as session:
        register(session, config, NOW)
    return db


def set_source(db: Database, status: SourceStatus, reason: str) -> datetime:
    with db.session() as session:
        row = session.get(SourceRow, "online")
        assert row is not None
        row.status, row.status_reason = status, reason
        session.flush()
        return row.updated_at


def problems_at(db: Database, config: Config, now: datetime) -> list[tuple[str, str]]:
    with db.session() as session:
        return [(p.key, p.state) for p in current_problems(session, config, now)]


def test_a_source_is_announced_unreachable_only_after_the_threshold(registered: Database, config: Config) -> None:
    since = set_source(registered, SourceStatus.UNREACHABLE, "connection refused")
    assert config.notify is not None
    limit = config.notify.unreachable_after

    assert problems_at(registered, config, since + limit - timedelta(seconds=1)) == []
    assert problems_at(registered, config, since + limit) == [("source:online", "unreachable")]


def test_refused_credentials_are_announced_at_once_with_what_to_correct(registered: Database, config: Config) -> None:
    since = set_source(registered, SourceStatus.AUTH_FAILED, "AADSTS7000215: invalid client secret")

    with registered.session() as session:
        problems = current_problems(session, config, since)

    assert [(p.key, p.state) for p in problems] == [("source:online", "auth_failed")]
    assert f"sources.online in {config.path}" in (problems[0].fix or "")


def test_the_workforce_endpoint_is_announced_failing_after_the_threshold(registered: Database, config: Config) -> None:
    with registered.session() as session:
        mailbox = session.exec(select(MailboxRow)).one()
        assert mailbox.id is not None
        failed = OutboxRow(
            change_id="c-1", mailbox_id=mailbox.id, sequence=1, change_type=ChangeType.CREATED, created_at=NOW,
            attempts=3, last_error="HTTP 503",
        )  # fmt: skip
        session.add(failed)
    assert config.notify is not None
    limit = config.notify.workforce_failing_after

    assert problems_at(registered, config, NOW + limit - timedelta(seconds=1)) == []
    assert problems_at(registered, config, NOW + limit) == [("workforce", "failing")]


def test_a_held_mapping_change_is_a_problem_until_applied(registered: Database, config: Config) -> None:
    digest = "ab" * 32
    with registered.session() as session:
        record_applied(session, "cd" * 32, "before", NOW)
        hold_mapping(session, digest, {"withdrawn": 6, "mailboxes": [{"shown": 6}]}, NOW)
        held = current_problems(session, config, NOW)
        record_applied(session, digest, "after", NOW)
        applied = current_problems(session, config, NOW)

    assert [(p.key, p.state) for p in held] == [(f"mapping:{digest}", "held")]
    assert "withdraw 6 of the 6 appointments" in held[0].text
    assert f"presence-bridge templates apply --config {config.path}" in (held[0].fix or "")
    assert applied == []


def test_a_removed_mailbox_is_no_problem_and_a_disabled_one_is(registered: Database, config: Config) -> None:
    with registered.session() as session:
        disable(session, "adele@contoso.com", REMOVED)
    assert problems_at(registered, config, NOW) == []

    with registered.session() as session:
        disable(session, "adele@contoso.com", "disabled by an administrator")
    assert problems_at(registered, config, NOW) == [
        ("mailbox:adele@contoso.com", "disabled: disabled by an administrator")
    ]


def test_a_subscription_quota_is_a_problem_until_a_subscription_is_made(registered: Database, config: Config) -> None:
    with registered.session() as session:
        mailbox_id = session.exec(select(MailboxRow.id)).one()
        assert mailbox_id is not None
        note_mailbox(session, mailbox_id, QUOTA_NOTE)
    assert problems_at(registered, config, NOW) == [("quota:adele@contoso.com", "quota")]

    with registered.session() as session:
        note_mailbox(session, mailbox_id, None)
    assert problems_at(registered, config, NOW) == []


def test_the_webhook_url_is_a_secret_kept_out_of_the_config_repr(config: Config) -> None:
    assert config.notify is not None
    assert config.notify.webhook_url == "https://chat.example.com/hooks/T0123-secret-part"
    assert "T0123" not in repr(config)


async def test_a_held_mapping_change_is_announced_and_so_is_its_end(notified: World, chat: ChatReceiver) -> None:
    await three_meetings(notified)
    mapping = notified.config_path.parent / "mapping.yaml"
    mapping.write_text(mapping.read_text().replace("  busy: meeting\n", ""))

    await wait_until(lambda: len(chat.messages) == 1)
    [problem] = chat.messages[0]["problems"]
    assert problem["key"].startswith("mapping:")
    assert "withdraw 3 of the 3 appointments" in problem["text"]
    assert f"presence-bridge templates apply --config {notified.config_path}" in problem["fix"]

    assert main(["templates", "apply", "--config", str(notified.cli_config())]) == 0

    await wait_until(lambda: len(chat.messages) == 2)
    assert [r["key"] for r in chat.messages[1]["resolved"]] == [problem["key"]]


async def test_instances_sharing_a_database_announce_a_change_once(registered: Database, config: Config) -> None:
    with registered.session() as session:
        disable(session, "adele@contoso.com", "disabled by an administrator")
    instances = [Notifier(registered, config, {}, clock=lambda: NOW) for _ in range(3)]

    announced = await asyncio.gather(*(instance.announce() for instance in instances))

    assert sorted(announced) == [False, False, True]
    with registered.session() as session:
        [message] = session.exec(select(NoticeMessageRow)).all()
    assert message.pending == ["webhook"]
    assert [p["key"] for p in message.payload["problems"]] == ["mailbox:adele@contoso.com"]
