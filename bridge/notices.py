"""Notices to the administrator: a problem is announced once when it starts and once when it ends.

The notifier does not hook into the code paths that fail. Every `notify.interval` it derives the problems there
are now from what the store records (`current_problems`: mailbox status and reason, source status, the oldest
undelivered change, a held mapping change), compares them with what was announced before, and records the
difference and one message saying it in one transaction. Several changes within one interval make one message,
a state that flaps faster than the interval makes at most one message per interval, and a restart finds the
announced set in the database instead of announcing everything again. A message that cannot be sent (the chat
webhook down, mail refused) stays queued and is retried with back-off; its failure is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.admin import REMOVED
from bridge.config import Config, EwsSourceConfig, NotifyConfig
from bridge.delivery import USER_AGENT
from bridge.domain import MailMessage, iso_utc
from bridge.outages import Outages
from bridge.sources.base import CalendarSource, SourceError
from bridge.store import Database, MailboxRow, MailboxStatus, OutboxRow, SourceRow, SourceStatus
from bridge.store.mapping_state import held_mapping
from bridge.store.notices import (
    Announced,
    NoticeMessage,
    claim_message,
    lock_announcements,
    message_done,
    record_announcement,
)
from bridge.subscriptions import QUOTA_NOTE
from bridge.waiting import first_of

log = logging.getLogger(__name__)

WEBHOOK = "webhook"
MAIL = "mail"
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_ERROR_EXCERPT = 300


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the administrator should know about; `state` tells one state of it from another."""

    key: str
    state: str
    text: str
    fix: str | None = None
    since: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"key": self.key, "state": self.state, "text": self.text, "fix": self.fix}
        shown["since"] = iso_utc(self.since) if self.since else None
        return shown


@dataclass(frozen=True, slots=True)
class NoticeTiming:
    lease: timedelta = timedelta(minutes=1)  # a message being sent by one instance is left alone this long
    retry_max: timedelta = timedelta(hours=1)


def current_problems(session: Session, config: Config, now: datetime) -> list[Problem]:
    """Every problem the store records now, in a stable order: the one place that reads the store for notices."""
    notify = config.notify or NotifyConfig()
    problems = [*_mailbox_problems(session, config), *_source_problems(session, config, notify, now)]
    problems += _workforce_problems(session, config, notify, now)
    held = held_mapping(session)
    if held is not None:
        preview = held.preview
        shown = sum(mailbox["shown"] for mailbox in preview.get("mailboxes", []))
        templates = config.templates or "FILE"
        problems.append(
            Problem(
                f"mapping:{held.digest}",
                "held",
                f"a template mapping change is held: it would withdraw {preview.get('withdrawn', 0)} of the "
                f"{shown} appointments shown in {len(preview.get('mailboxes', []))} mailboxes",
                f"see it with `presence-bridge templates diff {templates} --config {config.path}`; apply it with "
                f"`presence-bridge templates apply --config {config.path}`, or put the previous mapping back",
                held.since,
            )
        )
    return problems


def _mailbox_problems(session: Session, config: Config) -> list[Problem]:
    rows = session.exec(select(MailboxRow).order_by(col(MailboxRow.address))).all()
    problems = []
    for row in rows:
        enable = f"presence-bridge mailboxes enable {row.address} --config {config.path}"
        if row.status is not MailboxStatus.ACTIVE and row.status_reason != REMOVED:
            problems.append(
                Problem(
                    f"mailbox:{row.address}",
                    f"{row.status.value}: {row.status_reason}",
                    f"mailbox {row.address} is {row.status.value}: {row.status_reason or 'no reason recorded'}",
                    f"once the cause is dealt with: `{enable}`",
                )
            )
        elif row.status is MailboxStatus.ACTIVE and row.status_reason == QUOTA_NOTE:
            problems.append(
                Problem(
                    f"quota:{row.address}",
                    "quota",
                    f"mailbox {row.address}: {QUOTA_NOTE}",
                    "remove subscriptions other applications hold on this mailbox; the bridge keeps trying",
                )
            )
    return problems


def _source_problems(session: Session, config: Config, notify: NotifyConfig, now: datetime) -> list[Problem]:
    problems = []
    for row in session.exec(select(SourceRow).order_by(col(SourceRow.name))).all():
        settings = config.sources.get(row.name)
        reason = row.status_reason or "no reason recorded"
        # The row changes with every probe of a failing source; `status_since` is when the failure began.
        since = row.status_since or row.updated_at
        if row.status is SourceStatus.AUTH_FAILED:
            fix = f"correct the credentials of sources.{row.name} in {config.path}, then restart the bridge"
            text = f"source {row.name}: credentials refused since {iso_utc(since)}: {reason}"
            problems.append(Problem(f"source:{row.name}", "auth_failed", text, fix, since))
        elif row.status is SourceStatus.UNREACHABLE and now - since >= notify.unreachable_after:
            where = settings.service_endpoint if isinstance(settings, EwsSourceConfig) else "Microsoft Graph"
            fix = f"check that {where} answers from the bridge's host; the bridge keeps trying"
            text = f"source {row.name}: unreachable since {iso_utc(since)}: {reason}"
            problems.append(Problem(f"source:{row.name}", "unreachable", text, fix, since))
    return problems


def _workforce_problems(session: Session, config: Config, notify: NotifyConfig, now: datetime) -> list[Problem]:
    if config.workforce.url is None:
        return []  # the pull feed: nothing is pushed, so nothing can fail to arrive
    undelivered = col(OutboxRow.delivered_at).is_(None)
    # The oldest change that was tried and is still not accepted: changes are tried as soon as they are made,
    # so its age is how long the endpoint has been failing.
    connection = session.connection()
    failing = sa.select(sa.func.min(OutboxRow.created_at)).where(undelivered, col(OutboxRow.attempts) > 0)
    since: datetime | None = connection.execute(failing).scalar_one()
    if since is None:
        return []
    if now - since < notify.workforce_failing_after:
        return []
    count = connection.execute(sa.select(sa.func.count()).select_from(OutboxRow).where(undelivered)).scalar_one()
    host = urlsplit(config.workforce.url).netloc
    return [
        Problem(
            "workforce",
            "failing",
            f"the workforce endpoint at {host} has not accepted changes since {iso_utc(since)}; {count} waiting",
            f"check the workforce system at {host}; nothing is lost, the bridge keeps retrying",
            since,
        )
    ]


class Notifier:
    """Announces problems and their end through the configured webhook and mail (`config.notify`)."""

    def __init__(
        self,
        db: Database,
        config: Config,
        sources: Mapping[str, CalendarSource],
        *,
        timing: NoticeTiming = NoticeTiming(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert config.notify is not None
        self._db = db
        self._config = config
        self._notify = config.notify
        self._sources = sources
        self._timing = timing
        self._clock = clock
        self._channels = ([WEBHOOK] if self._notify.webhook_url else []) + ([MAIL] if self._notify.mail_to else [])
        self._outages = Outages(log)
        self._name = config.public_url or socket.gethostname()

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=_TIMEOUT, headers={"User-Agent": USER_AGENT}) as http:
            while not stop.is_set():
                try:
                    await self.announce()
                    await self.send_due(http)
                    self._outages.recovered("round", "notices: looking for problems works again")
                except Exception as exc:  # the database may be away for a while; the notifier must outlive it
                    self._outages.failed("round", f"notices: looking for problems failed (retried): {exc!r}")
                await first_of(stop, within=self._notify.interval.total_seconds())

    async def announce(self) -> bool:
        """Compare the problems now with those announced; queue one message if anything changed."""
        return await self._db.run(self._announce)

    def _announce(self, session: Session) -> bool:
        now = self._clock()
        before = lock_announcements(session)
        problems = current_problems(session, self._config, now)
        started = [p for p in problems if p.key not in before or before[p.key].state != p.state]
        current = {p.key for p in problems}
        ended = {key: notice for key, notice in before.items() if key not in current}
        if not started and not ended:
            return False
        announced = {p.key: Announced(p.state, p.text) for p in problems}
        record_announcement(session, announced, self._message(started, ended, problems, now), self._channels, now)
        return True

    def _message(
        self, started: list[Problem], ended: dict[str, Announced], problems: list[Problem], now: datetime
    ) -> tuple[str, str, dict[str, Any]]:
        counts = [f"{len(started)} new problem{'s' * (len(started) != 1)}"] if started else []
        counts += [f"{len(ended)} resolved"] if ended else []
        subject = f"presence-bridge {self._name}: {', '.join(counts)}"
        lines = [f"presence-bridge {self._name}, {iso_utc(now)}"]
        if started:
            lines += ["", "Problems:"]
            for problem in started:
                lines.append(f"- {problem.text}")
                lines += [f"  fix: {problem.fix}"] if problem.fix else []
        if ended:
            lines += ["", "Resolved:"] + [f"- {notice.text}" for notice in ended.values()]
        still = [p for p in problems if p not in started]
        lines += ["", f"Still open: {len(still)}" if still else "Nothing else is open."]
        lines += [f"- {problem.text}" for problem in still]
        text = "\n".join(lines)
        payload = {
            "text": text,  # what chat incoming webhooks (Slack, Teams, Mattermost, Google Chat) show
            "subject": subject,
            "bridge": self._name,
            "at": iso_utc(now),
            "problems": [problem.as_json() for problem in started],
            "resolved": [{"key": key, "text": notice.text} for key, notice in ended.items()],
            "open": [problem.as_json() for problem in problems],
        }
        return subject, text, payload

    async def send_due(self, http: aiohttp.ClientSession) -> int:
        """Send every message that is due, oldest first; returns how many went out completely."""
        sent = 0
        while True:
            message = await self._db.run(partial(claim_message, now=self._clock(), lease=self._timing.lease))
            if message is None:
                return sent
            pending, errors = [], []
            for channel in message.pending:
                if channel not in self._channels:
                    continue  # no longer configured
                error = await self._send(http, channel, message)
                if error is None:
                    self._outages.recovered(channel, f"notices by {channel} are sent again")
                else:
                    self._outages.failed(channel, f"a notice could not be sent by {channel} (retried): {error}")
                    pending.append(channel)
                    errors.append(f"{channel}: {error}")
            now = self._clock()
            done = partial(
                message_done,
                message_id=message.id,
                pending=pending,
                now=now,
                retry_at=now + self._retry_after(message.attempts),
                error="; ".join(errors) or None,
            )
            await self._db.run(done)
            if pending:
                return sent  # the channel is down: later messages would fail alike, and must not overtake this one
            sent += 1

    def _retry_after(self, attempts: int) -> timedelta:
        """A failed message waits one interval, then twice as long after each failure, up to `retry_max`."""
        return min(self._notify.interval * (1 << min(attempts - 1, 16)), self._timing.retry_max)

    async def _send(self, http: aiohttp.ClientSession, channel: str, message: NoticeMessage) -> str | None:
        if channel == WEBHOOK:
            return await self._post(http, message.payload)
        return await self._mail(message.subject, message.text)

    async def _post(self, http: aiohttp.ClientSession, payload: dict[str, Any]) -> str | None:
        assert self._notify.webhook_url is not None
        try:
            async with http.post(self._notify.webhook_url, json=payload) as response:
                if 200 <= response.status < 300:
                    return None
                body = (await response.text(errors="replace"))[:_ERROR_EXCERPT]
                return f"HTTP {response.status} {body}".strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The URL carries a credential: the error names the failure, never the URL.
            return type(exc).__name__

    async def _mail(self, subject: str, text: str) -> str | None:
        mail = self._config.mail
        source = self._sources.get(mail.source) if mail is not None else None
        if mail is None or source is None:
            return "the mail section names no configured source"
        try:
            await source.send_mail(mail.sender, MailMessage(subject=subject, body=text, to=self._notify.mail_to))
        except SourceError as exc:
            return str(exc)
        return None
