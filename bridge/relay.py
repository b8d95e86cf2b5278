"""The relay: the workforce system's commands carried out in Exchange, once each, and never echoed back.

Every command goes the same way (DESIGN §3.3, docs/api.md):

1. store it (`sending`) in its own transaction, or find the command an earlier request with the same
   idempotency key stored and answer as that one did;
2. call Exchange (a create carries the transaction id, so Graph drops a repeated POST);
3. in one transaction, record Exchange's answer on the command and the mirror rows the write changed.

A crash between 1 and 3 leaves the command `sending`; `recover` finishes it after a restart (creates, updates,
deletes, state and purges are safe to repeat) or reports it (mail: Exchange cannot tell whether it went out, so
it is not sent twice). The command rows are also what the sync engine reads to recognise the relay's writes when
they come back as changes (`store.commands.relay_writes`).

Payloads arrive validated (bridge/web/commands.py); the relay trusts their shape. It answers in the bridge's own
words (bridge/outcomes.py); the web layer turns those into status codes and problem documents, and gives the relay
the `record` function that says what of an outcome the command row keeps.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session

from bridge.config import MailConfig
from bridge.domain import (
    Appointment,
    AppointmentDraft,
    AppointmentKind,
    AppointmentPatch,
    MailMessage,
    Pattern,
    Recurrence,
    Weekday,
    iso_utc,
)
from bridge.logs import about
from bridge.mailbox_zones import zone_of
from bridge.outages import Outages
from bridge.outcomes import (
    AppointmentView,
    Conflict,
    Created,
    Deleted,
    Done,
    ExchangeFailed,
    Invalid,
    KeyReused,
    MailAccepted,
    NotFound,
    Outcome,
    Purged,
    Recorded,
    Replayed,
    Stale,
    StateSet,
    Unavailable,
    Updated,
)
from bridge.sources import base as sources
from bridge.sources.base import CalendarSource, ItemNotFound, MailboxNotFound, SourceError, Throttled
from bridge.store import CommandKind, CommandRow, CommandStatus, Database, MailboxRow, MailboxStatus
from bridge.store import commands as stored
from bridge.store.commands import (
    Addressed,
    Draft,
    accept,
    addressed,
    created_item,
    current_state_item,
    extend_need,
    finish,
    needed_until,
    reclaim_interrupted,
)
from bridge.store.mirror import load_item, series_members, write_mirror
from bridge.store.work import find_mailbox
from bridge.templates import TemplateMapping
from bridge.waiting import first_of
from bridge.zones import UTC_ZONE, local_instant

log = logging.getLogger(__name__)

MAIL_SCOPE = "mail"


@dataclass(frozen=True, slots=True)
class _Command:
    """A stored command as the executor needs it, detached from the session."""

    id: str
    kind: CommandKind
    payload: dict[str, Any]
    attempts: int
    transaction_id: str | None
    item_id: str | None
    mailbox_id: int | None = None
    address: str = ""
    source: str = ""
    current: Appointment | None = None  # the mirrored state of the item an update or delete names


@dataclass(slots=True)
class _Result:
    outcome: Outcome
    item_id: str | None = None
    change_key: str | None = None
    put: list[Appointment] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    drop_series: list[str] = field(default_factory=list)


class Relay:
    def __init__(
        self,
        db: Database,
        sources: Mapping[str, CalendarSource],
        mapping: Callable[[], TemplateMapping],
        mail: MailConfig | None,
        *,
        record: Callable[[Outcome], Recorded],
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stale: timedelta = timedelta(minutes=5),
        time_zones: Mapping[str, str] | None = None,
    ) -> None:
        self._owner = owner
        self._record = record
        self._time_zones = time_zones or {}  # source → zone of mailboxes whose own zone is not known yet
        self._db = db
        self._sources = sources
        self._mapping = mapping
        self._mail = mail
        self._clock = clock
        self._stale = stale
        self._outages = Outages(log)

    # -- the commands ----------------------------------------------------------------------------------------

    async def create(self, mailbox: str, request: dict[str, Any], key: str | None) -> Outcome:
        return await self._submit(mailbox, CommandKind.CREATE, {"request": request}, key)

    async def update(
        self, mailbox: str, target: str, request: dict[str, Any], if_match: str, key: str | None
    ) -> Outcome:
        payload = {"request": {**request, "target": target, "if_match": if_match}}
        return await self._submit(mailbox, CommandKind.UPDATE, payload, key, target=target)

    async def delete(self, mailbox: str, target: str, if_match: str, key: str | None) -> Outcome:
        payload = {"request": {"target": target, "if_match": if_match}}
        return await self._submit(mailbox, CommandKind.DELETE, payload, key, target=target)

    async def set_state(self, mailbox: str, request: dict[str, Any], key: str | None) -> Outcome:
        return await self._submit(mailbox, CommandKind.STATE, {"request": request}, key)

    async def purge(self, mailbox: str, *, dry_run: bool, key: str | None) -> Outcome:
        if dry_run:
            found = await self._mailbox_and_source(mailbox)
            if not isinstance(found, tuple):
                return found
            row, source = found
            try:
                items = await source.find_bridge_items(row.address)
            except SourceError as exc:
                return _source_failure(exc)
            return Purged(tuple(items), dry_run=True)
        return await self._submit(mailbox, CommandKind.PURGE, {"request": {"purge": True}}, key)

    async def send_mail(self, request: dict[str, Any], key: str | None) -> Outcome:
        if self._mail is None:
            return Unavailable("mail is not configured: add a `mail:` section with a sender")
        draft = Draft(
            id=str(uuid.uuid4()), scope=MAIL_SCOPE, kind=CommandKind.MAIL, idempotency_key=key, payload=request
        )
        return await self._run(draft)

    async def run(self, stop: asyncio.Event, *, every: float = 60.0) -> None:
        """Take up interrupted commands now (this instance's own, after a restart) and every `every` seconds."""
        while not stop.is_set():
            try:
                await self.recover()
            except Exception:  # the database may be away for a while; the loop must outlive it
                log.exception("recovering interrupted commands failed; retrying")
            await first_of(stop, within=every)

    async def recover(self) -> int:
        """Finish (or report) commands whose instance died while sending them; returns how many were taken up."""
        now = self._clock()
        rows = await self._db.run(lambda session: _reclaim(session, self._owner, now, self._stale))
        for command in rows:
            log.info("taking up interrupted %s command %s", command.kind.value, command.id)
            await self._execute_and_finish(command)
        return len(rows)

    # -- storing and finishing -------------------------------------------------------------------------------

    async def _submit(
        self, address: str, kind: CommandKind, payload: dict[str, Any], key: str | None, *, target: str | None = None
    ) -> Outcome:
        command_id = str(uuid.uuid4())
        creates = kind in (CommandKind.CREATE, CommandKind.STATE)
        draft = Draft(
            id=command_id,
            scope=address.lower(),
            kind=kind,
            idempotency_key=key,
            payload=payload,
            transaction_id=(key or command_id) if creates else None,
        )
        return await self._run(draft, target=target)

    async def _run(self, draft: Draft, *, target: str | None = None) -> Outcome:
        now = self._clock()
        mapping = self._mapping()
        try:
            accepted = await self._db.run(
                lambda session: _accept(session, draft, target, mapping, self._owner, now, self._time_zones),
                urgent=True,
            )
        except stored.KeyReused:
            return KeyReused("this Idempotency-Key was used before for a different request; use a new key")
        if not isinstance(accepted, _Command):
            return accepted
        return await self._execute_and_finish(accepted)

    async def _execute_and_finish(self, command: _Command) -> Outcome:
        try:
            with about(source=command.source or None, mailbox=command.address or None):
                result = await self._execute(command)
            self._outages.recovered(
                command.address or MAIL_SCOPE, f"{command.address or MAIL_SCOPE}: commands work again"
            )
        except MailboxNotFound as exc:
            result = _Result(NotFound(f"Exchange does not know the mailbox: {exc}"))
        except SourceError as exc:
            result = _Result(_source_failure(exc))
        except Exception as exc:
            # A bug or an answer nobody foresaw: this command fails (the caller may retry later), the relay and
            # every other mailbox's commands go on.
            where = command.address or MAIL_SCOPE
            self._outages.unexpected(where, f"{where}: a {command.kind.value} command failed unexpectedly: {exc}", exc)
            detail = "the bridge failed unexpectedly while carrying out this command; try again later"
            result = _Result(Unavailable(detail, retry_after=30))
        mapping = self._mapping()
        await self._db.run(lambda session: self._finish(session, command, result, mapping), urgent=True)
        return result.outcome

    def _finish(self, session: Session, command: _Command, result: _Result, mapping: TemplateMapping) -> None:
        now = self._clock()
        answer = self._record(result.outcome)
        done = isinstance(result.outcome, Done)
        finish(
            session,
            command.id,
            now,
            status=CommandStatus.DONE if done else CommandStatus.FAILED,
            http_status=answer.status,
            result=answer.body,
            item_id=result.item_id,
            change_key=result.change_key,
            error=answer.error,
            needed_until=needed_until(command.kind, command.payload) if done else None,
        )
        if isinstance(result.outcome, Updated):
            # Named by the bridge's id, the appointment now ends then: retention keeps that id as long.
            extend_need(session, command.payload["request"]["target"], max(a.end for a in result.put))
        if command.mailbox_id is None or not (result.put or result.drop or result.drop_series):
            return
        # No lock on the mailbox row: waiting here for a sync commit of the same mailbox made the command's answer
        # as slow as that commit (a second on PostgreSQL under load). None is needed: a sync commit planning now
        # reads this command as `sending` and leaves the items it touches alone (a create it brings is an echo,
        # written as the same appointment), and the mirror rows themselves are locked row by row.
        window = mapping.window(now)
        drop = list(result.drop)
        for series_id in result.drop_series:
            drop += series_members(session, command.mailbox_id, series_id)
        put = [mapping.mirror_item(a)[0] for a in result.put if window.overlaps(a.start, a.end)]
        write_mirror(session, command.mailbox_id, put, drop)

    # -- talking to Exchange -----------------------------------------------------------------------------------

    async def _execute(self, command: _Command) -> _Result:
        if command.kind == CommandKind.MAIL:
            return await self._send_mail(command)
        source = self._sources.get(command.source)
        if source is None:
            return _Result(Unavailable(f"source {command.source!r} is not configured"))
        match command.kind:
            case CommandKind.CREATE:
                return await self._create(source, command, _resolved(command.payload))
            case CommandKind.STATE:
                return await self._state(source, command)
            case CommandKind.UPDATE:
                return await self._update(source, command)
            case CommandKind.DELETE:
                return await self._delete(source, command)
            case CommandKind.PURGE:
                return await self._purge(source, command)
        raise AssertionError(command.kind)

    async def _create(self, source: CalendarSource, command: _Command, request: dict[str, Any]) -> _Result:
        assert command.transaction_id is not None
        mapping = self._mapping()
        rule = mapping.rule(request["template"])
        recurrence = _recurrence(request.get("recurrence"))
        draft = AppointmentDraft(
            subject=request.get("subject") or rule.subject or rule.name,
            start=_instant(request["start"]),
            end=_instant(request["end"]),
            free_busy=rule.show_as,
            all_day=request.get("all_day", rule.all_day),
            body=request.get("body", ""),
            categories=(rule.category,) if rule.category else (),
            bridge_ref=command.id,
            recurrence=recurrence,
            time_zone=request.get("time_zone", UTC_ZONE),
        )
        written = await source.create(command.address, draft, command.transaction_id)
        created = Appointment(
            item_id=written.item_id,
            change_key=written.change_key,
            start=draft.start,
            end=draft.end,
            free_busy=draft.free_busy,
            subject=draft.subject,
            all_day=draft.all_day,
            kind=AppointmentKind.SERIES_MASTER if recurrence else AppointmentKind.SINGLE,
            bridge_ref=command.id,
        )
        outcome = Created(AppointmentView(created, command.id, request["template"]), request.get("recurrence"))
        # A series enters the mirror as its occurrences, which the next read brings (recognised by the key).
        return _Result(outcome, written.item_id, written.change_key, put=[] if recurrence else [created])

    async def _state(self, source: CalendarSource, command: _Command) -> _Result:
        payload = command.payload
        for previous in payload.get("touches", ()):
            await source.delete(command.address, previous)
        result = await self._create(source, command, payload["plan"])
        result.drop += payload.get("touches", ())
        if isinstance(result.outcome, Created):
            result.outcome = StateSet(result.outcome.view, (payload.get("touches") or [None])[0])
        return result

    async def _update(self, source: CalendarSource, command: _Command) -> _Result:
        request = _resolved(command.payload)
        found = await self._target(source, command)
        if not isinstance(found, Appointment):
            return _Result(found)
        current = found
        mapping = self._mapping()
        patch = _patch(request, mapping)
        start, end = patch.start or current.start, patch.end or current.end
        if end <= start:
            reason = "the appointment would end before it starts"
            return _Result(Invalid(reason, ({"name": "end", "reason": reason},)))
        try:
            written = await source.update(command.address, current.item_id, patch, request["if_match"])
        except sources.Conflict:
            return await self._conflict(source, command, patch)
        except ItemNotFound:
            return _Result(NotFound(f"appointment {request['target']} is no longer in the calendar"))
        updated = replace(
            current,
            change_key=written.change_key,
            start=start,
            end=end,
            free_busy=patch.free_busy or current.free_busy,
            subject=current.subject if patch.subject is None else patch.subject,
            all_day=current.all_day if patch.all_day is None else patch.all_day,
        )
        template = request.get("template") or _template_of(updated, mapping)
        outcome = Updated(AppointmentView(updated, request["target"], template))
        return _Result(outcome, updated.item_id, written.change_key, put=[updated])

    async def _delete(self, source: CalendarSource, command: _Command) -> _Result:
        request = command.payload["request"]
        found = await self._target(source, command)
        if not isinstance(found, Appointment):
            # Deleting what is already gone is what the caller wanted; a retry after a crash lands here too.
            return _Result(Deleted() if isinstance(found, NotFound) and command.attempts > 1 else found)
        try:
            await source.delete(command.address, found.item_id, request["if_match"])
        except sources.Conflict:
            return await self._conflict(source, command, None)
        return _Result(Deleted(), found.item_id, drop=[found.item_id], drop_series=[found.item_id])

    async def _purge(self, source: CalendarSource, command: _Command) -> _Result:
        items = await source.find_bridge_items(command.address)
        ids = [item.item_id for item in items]
        # Recorded before deleting, so that a read planned meanwhile leaves these items to the relay.
        await self._db.run(lambda session: _touches(session, command.id, ids), urgent=True)
        for item in items:
            await source.delete(command.address, item.item_id)
        return _Result(Purged(tuple(items), dry_run=False), drop=ids, drop_series=ids)

    async def _send_mail(self, command: _Command) -> _Result:
        assert self._mail is not None
        if command.attempts > 1:
            detail = (
                "the bridge stopped while sending this mail; Exchange cannot say whether it went out, "
                "so it was not sent again"
            )
            return _Result(ExchangeFailed(detail))
        source = self._sources.get(self._mail.source)
        if source is None:
            return _Result(Unavailable(f"source {self._mail.source!r} is not configured"))
        request = command.payload
        message = MailMessage(
            subject=request["subject"],
            body=request["body"],
            to=tuple(request["to"]),
            cc=tuple(request.get("cc", ())),
            bcc=tuple(request.get("bcc", ())),
            html=request.get("content_type") == "html",
        )
        await source.send_mail(self._mail.sender, message)
        return _Result(MailAccepted(command.id, self._mail.sender))

    async def _target(self, source: CalendarSource, command: _Command) -> Appointment | NotFound | Conflict:
        """The appointment an update or delete names, refused when the mailbox owner did not organise it."""
        target = command.payload["request"]["target"]
        assert command.item_id is not None
        current = command.current or await source.read_item(command.address, command.item_id)
        if current is None:
            return NotFound(f"mailbox {command.address} has no appointment {target}")
        if not current.is_organizer:
            detail = (
                f"appointment {target} is an invitation from someone else: only its organiser can change it, "
                "and the bridge changes only what the mailbox owner organised"
            )
            return Conflict(detail)
        return current

    async def _conflict(self, source: CalendarSource, command: _Command, patch: AppointmentPatch | None) -> _Result:
        """Exchange refused the write: the item changed since the version given. Re-read and report, never retry."""
        request = command.payload["request"]
        assert command.item_id is not None
        current = await source.read_item(command.address, command.item_id)
        mapping = self._mapping()
        if current is not None and patch is not None and command.attempts > 1 and _applied(current, patch):
            # A retry after a crash: the first attempt went through, and that is why the version moved on.
            template = request.get("template") or _template_of(current, mapping)
            view = AppointmentView(current, request["target"], template)
            return _Result(Updated(view), current.item_id, current.change_key, put=[current])
        shown = None if current is None else AppointmentView(current, request["target"], _template_of(current, mapping))
        detail = f"appointment {request['target']} changed in Exchange since version {request['if_match']}"
        return _Result(Stale(detail, shown))

    async def _mailbox_and_source(self, address: str) -> tuple[MailboxRow, CalendarSource] | NotFound | Unavailable:
        row = await self._db.run(lambda session: find_mailbox(session, address), urgent=True)
        if row is None:
            return NotFound(f"the bridge mirrors no mailbox {address}")
        source = self._sources.get(row.source)
        if source is None:
            return Unavailable(f"source {row.source!r} is not configured")
        return row, source


# -- the transactions ------------------------------------------------------------------------------------------


def _accept(
    session: Session,
    draft: Draft,
    target: str | None,
    mapping: TemplateMapping,
    owner: str,
    now: datetime,
    time_zones: Mapping[str, str],
) -> _Command | NotFound | Conflict | Invalid | Replayed:
    found = None
    if draft.kind != CommandKind.MAIL:
        found = addressed(session, draft.scope)
        if found is None:
            return NotFound(f"the bridge mirrors no mailbox {draft.scope}")
        if found.status != MailboxStatus.ACTIVE:
            reason = f": {found.status_reason}" if found.status_reason else ""
            return Conflict(f"mailbox {found.address} is {found.status.value}{reason}")
        draft.mailbox_id = found.id
        if draft.kind in (CommandKind.CREATE, CommandKind.UPDATE, CommandKind.STATE):
            resolved = _in_zone(draft.payload["request"], zone_of(found, time_zones))
            if isinstance(resolved, Invalid):
                return resolved
            draft.payload = {**draft.payload, "resolved": resolved}
    if draft.kind == CommandKind.STATE and draft.mailbox_id is not None:
        request = _resolved(draft.payload)
        zone = request["time_zone"]
        start = now.replace(second=0, microsecond=0)
        end = (
            _instant(request["until"]) if request.get("until") else mapping.state_end(request["template"], start, zone)
        )
        if end <= start:
            reason = "must be in the future"
            return Invalid(f"until {reason}", ({"name": "until", "reason": reason},))
        previous = current_state_item(session, draft.mailbox_id)
        plan = {"template": request["template"], "start": iso_utc(start), "end": iso_utc(end), "time_zone": zone}
        draft.payload = {**draft.payload, "plan": plan, "touches": [previous] if previous else []}
    if target is not None and draft.mailbox_id is not None:
        draft.item_id = created_item(session, draft.mailbox_id, target) or target
    accepted = accept(session, draft, owner, now)
    row = accepted.row
    if isinstance(row, CommandRow) and not accepted.new:
        return _replay(row)
    # An earlier request's command taken up again is this mailbox's too: a removed mailbox's commands went with it.
    return _detached(session, row, found)


def _reclaim(session: Session, owner: str, now: datetime, stale: timedelta) -> list[_Command]:
    commands = []
    for row in reclaim_interrupted(session, owner, now, stale):
        mailbox = session.get(MailboxRow, row.mailbox_id) if row.mailbox_id is not None else None
        commands.append(_detached(session, row, mailbox))
    return commands


def _detached(session: Session, row: Draft | CommandRow, mailbox: MailboxRow | Addressed | None) -> _Command:
    current = None
    if mailbox is not None and mailbox.id is not None and row.item_id is not None:
        mirrored = load_item(session, mailbox.id, row.item_id)
        current = None if mirrored is None else mirrored.appointment
    return _Command(
        id=row.id,
        kind=row.kind,
        payload=dict(row.payload),
        attempts=row.attempts,
        transaction_id=row.transaction_id,
        item_id=row.item_id,
        mailbox_id=row.mailbox_id,
        address=mailbox.address if mailbox else "",
        source=mailbox.source if mailbox else "",
        current=current,
    )


def _touches(session: Session, command_id: str, ids: list[str]) -> None:
    row = session.get_one(CommandRow, command_id, with_for_update=True)
    row.payload = {**row.payload, "touches": ids}


def _replay(row: CommandRow) -> Conflict | Replayed:
    """The answer an earlier request with the same idempotency key got (or will get)."""
    if row.status == CommandStatus.SENDING:
        return Conflict(f"command {row.id} with this Idempotency-Key is still being carried out", retry_after=1)
    assert row.http_status is not None
    return Replayed(Recorded(row.http_status, row.result, row.error))


# -- values ------------------------------------------------------------------------------------------------------


def _source_failure(exc: SourceError) -> Unavailable | ExchangeFailed:
    if isinstance(exc, Throttled):
        return Unavailable(f"Exchange is throttling the bridge: {exc}", retry_after=max(1, round(exc.retry_after)))
    if isinstance(exc, (sources.Unavailable, sources.AuthFailed)):
        return Unavailable(f"Exchange cannot be reached now: {exc}", retry_after=30)
    return ExchangeFailed(f"Exchange refused the request: {exc}")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _resolved(payload: dict[str, Any]) -> dict[str, Any]:
    """The request as carried out: its times as UTC instants and the zone named (a command stored before the
    bridge knew zones has only the request, its times all UTC)."""
    resolved: dict[str, Any] = payload.get("resolved", payload["request"])
    return resolved


def _in_zone(request: dict[str, Any], mailbox_zone: str) -> dict[str, Any] | Invalid:
    """The request with its local times (no offset: the API layer keeps them naive) placed in the request's
    `time_zone` or else the mailbox's, as UTC instants, and the zone it was read in named, so that Exchange
    keeps it with the appointment."""
    zone = request.get("time_zone") or mailbox_zone
    resolved = {**request, "time_zone": zone}
    for name in ("start", "end", "until"):
        text = request.get(name)
        if isinstance(text, str):
            parsed = datetime.fromisoformat(text)
            instant = local_instant(parsed, zone) if parsed.tzinfo is None else parsed.astimezone(UTC)
            resolved[name] = iso_utc(instant)
    if "start" in resolved and "end" in resolved and resolved["end"] <= resolved["start"]:
        reason = f"must be after start (both read in {zone})"
        return Invalid("invalid: end", ({"name": "end", "reason": reason},))
    return resolved


def _recurrence(value: dict[str, Any] | None) -> Recurrence | None:
    if value is None:
        return None
    return Recurrence(
        pattern=Pattern(value["pattern"]),
        until=date.fromisoformat(value["until"]),
        interval=value.get("interval", 1),
        days_of_week=tuple(Weekday(day) for day in value.get("days_of_week", ())),
    )


def _patch(request: dict[str, Any], mapping: TemplateMapping) -> AppointmentPatch:
    rule = mapping.rule(request["template"]) if request.get("template") else None
    return AppointmentPatch(
        subject=request.get("subject"),
        start=_instant(request["start"]) if request.get("start") else None,
        end=_instant(request["end"]) if request.get("end") else None,
        free_busy=rule.show_as if rule else None,
        all_day=request.get("all_day"),
        body=request.get("body"),
        categories=((rule.category,) if rule.category else ()) if rule else None,
        time_zone=request.get("time_zone", UTC_ZONE),
    )


def _applied(current: Appointment, patch: AppointmentPatch) -> bool:
    wanted: dict[str, Any] = {
        "subject": patch.subject,
        "start": patch.start,
        "end": patch.end,
        "free_busy": patch.free_busy,
        "all_day": patch.all_day,
    }
    return all(value is None or getattr(current, name) == value for name, value in wanted.items())


def _template_of(appointment: Appointment, mapping: TemplateMapping) -> str | None:
    entry = mapping.map(appointment)
    return None if entry is None else entry.template
