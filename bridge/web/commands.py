"""The write side of the REST API: the workforce system's commands, checked here and carried out by the relay.

Every body and parameter is checked before anything is stored or sent: a bad request gets a 4xx problem
document naming each wrong field (`invalid_params`) and changes nothing. What passes is normalised (UTC
instants, explicit fields) so that a retry with the same `Idempotency-Key` compares equal to the first request.

A time without an offset (or a date) is the person's wall-clock time: it stays naive here, written
`YYYY-MM-DDTHH:MM:SS`, and the relay reads it in the request's `time_zone` or the mailbox's (docs/api.md, "Local
time"). An all-day appointment's start and end are dates (`YYYY-MM-DD`): midnight as written, the offset dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from msgspec import UnsetType

from bridge.domain import MAIL_ADDRESS, Pattern, Weekday, iso_utc
from bridge.relay import MAIL_SCOPE, Relay
from bridge.store import CommandRow, Database
from bridge.store.commands import find_command
from bridge.templates import TemplateMapping
from bridge.web.answers import answer, respond
from bridge.web.bodies import Invalid, decode, invalid_request, parse_time, read_json, supplied
from bridge.web.problems import problem
from bridge.web.schemas import AppointmentChange, Mail, NewAppointment, Recurrence, State
from bridge.zones import iana_zone

MAX_BODY = 64 * 1024
MAX_MAIL_BODY = 1024 * 1024
MAX_RECIPIENTS = 500
# Idempotency keys and versions (change keys): printable ASCII without spaces, as RFC 9110 tokens and etags are.
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,255}")
T = TypeVar("T")


class CommandRoutes:
    def __init__(
        self,
        db: Database,
        relay: Relay,
        mapping: Callable[[], TemplateMapping],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._relay = relay
        self._mapping = mapping
        self._clock = clock

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, MAX_BODY)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        normalised = _appointment(body, self._mapping(), self._clock(), invalid, partial=False)
        if invalid:
            return invalid_request(invalid)
        mailbox = request.match_info["mailbox"]
        given = answer(await self._relay.create(mailbox, normalised, key))
        response = respond(given)
        if given.status == 201 and given.body is not None:
            response.headers["Location"] = f"/api/v1/mailboxes/{mailbox}/appointments/{given.body['id']}"
        return response

    async def update(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, MAX_BODY)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        version = _if_match(request)
        normalised = _appointment(body, self._mapping(), self._clock(), invalid, partial=True)
        if not body and not invalid:
            invalid.append({"name": "body", "reason": "name at least one field to change"})
        if invalid:
            return invalid_request(invalid)
        if version is None:
            return _precondition_required()
        mailbox, target = request.match_info["mailbox"], request.match_info["id"]
        return respond(answer(await self._relay.update(mailbox, target, normalised, version, key)))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        if invalid:
            return invalid_request(invalid)
        version = _if_match(request)
        if version is None:
            return _precondition_required()
        mailbox, target = request.match_info["mailbox"], request.match_info["id"]
        return respond(answer(await self._relay.delete(mailbox, target, version, key)))

    async def state(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, MAX_BODY)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        state = decode(body, State, invalid)
        if state is None:
            return invalid_request(invalid)
        template = _template(state.template, self._mapping(), invalid)
        normalised: dict[str, Any] = {"template": template}
        _time_zone(state.time_zone, normalised, invalid)
        if isinstance(state.until, str):
            until = _instant(state.until, "until", invalid)
            if until is not None and until.tzinfo is not None and until <= self._clock():
                invalid.append({"name": "until", "reason": "must be in the future"})
            normalised["until"] = _written(until) if until else None
        if invalid:
            return invalid_request(invalid)
        return respond(answer(await self._relay.set_state(request.match_info["mailbox"], normalised, key)))

    async def mail(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, MAX_MAIL_BODY)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        mail = decode(body, Mail, invalid)
        if mail is None:
            return invalid_request(invalid)
        lists = {"to": mail.to, "cc": _listed(mail.cc), "bcc": _listed(mail.bcc)}
        for name, addresses in lists.items():
            _addresses(addresses, name, invalid)
        if sum(len(addresses) for addresses in lists.values()) > MAX_RECIPIENTS:
            invalid.append({"name": "to", "reason": f"at most {MAX_RECIPIENTS} recipients in all"})
        if invalid:
            return invalid_request(invalid)
        normalised = {**lists, "subject": mail.subject, "body": mail.body, "content_type": mail.content_type}
        return respond(answer(await self._relay.send_mail(normalised, key)))

    async def purge(self, request: web.Request) -> web.StreamResponse:
        invalid: Invalid = []
        key = _idempotency_key(request, invalid)
        if invalid:
            return invalid_request(invalid)
        dry_run = request.query.get("dry_run", "false").lower()
        if dry_run not in ("true", "false"):
            return invalid_request([{"name": "dry_run", "reason": "true or false"}])
        return respond(
            answer(await self._relay.purge(request.match_info["mailbox"], dry_run=dry_run == "true", key=key))
        )

    async def command(self, request: web.Request) -> web.StreamResponse:
        command_id = request.match_info["id"]
        row = await self._db.run(lambda session: find_command(session, command_id))
        if row is None:
            return problem(404, "Not Found", f"no command {command_id}")
        return web.json_response(_command_view(row))


def _command_view(row: CommandRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind.value,
        "mailbox": None if row.scope == MAIL_SCOPE else row.scope,
        "status": row.status.value,
        "http_status": row.http_status,
        "result": row.result,
        "error": row.error,
        "attempts": row.attempts,
        "created_at": iso_utc(row.created_at),
        "finished_at": iso_utc(row.finished_at) if row.finished_at else None,
    }


# -- reading and answering -----------------------------------------------------------------------------------


def _precondition_required() -> web.Response:
    detail = "send If-Match with the appointment's version (from the feed, the list or the create's answer)"
    return problem(428, "Precondition Required", detail, invalid_params=[{"name": "If-Match", "reason": "missing"}])


def _idempotency_key(request: web.Request, invalid: Invalid) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _PRINTABLE.fullmatch(key):
        invalid.append({"name": "Idempotency-Key", "reason": "1 to 255 printable ASCII characters without spaces"})
        return None
    return key


def _if_match(request: web.Request) -> str | None:
    """The version in If-Match, as a bare change key; quotes and a weak-validator prefix are accepted.

    None also for what no version looks like (RFC 9110 etags are printable ASCII): it never reaches the store.
    """
    value = request.headers.get("If-Match", "").strip()
    value = value.removeprefix("W/").strip('"')
    return value if value and _PRINTABLE.fullmatch(value) else None


# -- fields ----------------------------------------------------------------------------------------------------


def _appointment(
    body: dict[str, Any], mapping: TemplateMapping, now: datetime, invalid: Invalid, *, partial: bool
) -> dict[str, Any]:
    """The checked, normalised fields of a create (all required ones present) or of a change (`partial`)."""
    given: NewAppointment | AppointmentChange | None = (
        decode(body, AppointmentChange, invalid) if partial else decode(body, NewAppointment, invalid)
    )
    if given is None:
        return {}
    normalised: dict[str, Any] = {}
    template = _template(supplied(given.template), mapping, invalid)
    if template is not None:
        normalised["template"] = template
    all_day = supplied(given.all_day)
    if all_day is None and template is not None and not partial:
        all_day = mapping.rule(template).all_day
    if all_day is not None:
        normalised["all_day"] = all_day
    _time_zone(given.time_zone, normalised, invalid)
    times: dict[str, datetime] = {}
    for name, written in (("start", supplied(given.start)), ("end", supplied(given.end))):
        value = None if written is None else _instant(written, name, invalid)
        if value is None:
            continue
        if all_day:
            if value.time() != datetime.min.time():
                invalid.append({"name": name, "reason": "an all-day appointment starts and ends on a date (00:00)"})
            # The day as written: its midnight in the person's zone, whatever offset came with it.
            value = value.replace(tzinfo=None)
        times[name] = value
        normalised[name] = value.date().isoformat() if all_day else _written(value)
    start, end = times.get("start"), times.get("end")
    # Two times of one kind compare here; a local time against an instant only once the zone is known (relay).
    if start is not None and end is not None and (start.tzinfo is None) == (end.tzinfo is None) and end <= start:
        invalid.append({"name": "end", "reason": "must be after start"})
    for name, text in (("subject", supplied(given.subject)), ("body", supplied(given.body))):
        if text is not None:
            normalised[name] = text
    if isinstance(given, NewAppointment) and isinstance(given.recurrence, Recurrence):
        recurrence = _recurrence(given.recurrence, times, mapping, now, invalid)
        if recurrence is not None:
            normalised["recurrence"] = recurrence
    return normalised


def _recurrence(
    given: Recurrence, times: dict[str, datetime], mapping: TemplateMapping, now: datetime, invalid: Invalid
) -> dict[str, Any] | None:
    before = len(invalid)
    days = _listed(given.days_of_week)
    if len(set(days)) != len(days):
        weekdays = sorted(day.value for day in Weekday)
        invalid.append({"name": "recurrence.days_of_week", "reason": f"distinct names out of {weekdays}"})
    elif given.pattern == Pattern.WEEKLY and not days:
        invalid.append({"name": "recurrence.days_of_week", "reason": "a weekly recurrence names its days"})
    last = now.date() + timedelta(days=mapping.days_ahead)
    if given.until > last:
        reason = f"at most {last.isoformat()}: the mapping mirrors {mapping.days_ahead} days ahead"
        invalid.append({"name": "recurrence.until", "reason": reason})
    elif "start" in times and given.until < times["start"].date():
        invalid.append({"name": "recurrence.until", "reason": "must not be before start"})
    start, end = times.get("start"), times.get("end")
    if start is not None and end is not None and (start.tzinfo is None) == (end.tzinfo is None):
        period = timedelta(days=given.interval * (7 if given.pattern == Pattern.WEEKLY else 1))
        if end - start > period:
            invalid.append({"name": "end", "reason": "each occurrence must be shorter than the recurrence's period"})
    if len(invalid) > before:
        return None
    return {
        "pattern": given.pattern.value,
        "interval": given.interval,
        "days_of_week": [day.value for day in days],
        "until": given.until.isoformat(),
    }


def _template(value: str | None, mapping: TemplateMapping, invalid: Invalid) -> str | None:
    if value is None:
        return None
    if value not in mapping.templates:
        known = ", ".join(sorted(mapping.templates))
        invalid.append({"name": "template", "reason": f"unknown template; the mapping defines: {known}"})
        return None
    return value


def _instant(value: str, name: str, invalid: Invalid) -> datetime | None:
    """A date-time as written (aware with an offset, naive without: local time) or a date (naive midnight)."""
    parsed = parse_time(value)
    if parsed is None:
        reason = "an ISO 8601 date-time or date, e.g. 2026-11-24T09:00:00Z or 2026-11-24T09:00:00 (local time)"
        invalid.append({"name": name, "reason": reason})
    return parsed


def _written(value: datetime) -> str:
    """An instant in UTC (`...Z`); a local time as `YYYY-MM-DDTHH:MM:SS` for the relay to place in a zone."""
    return iso_utc(value) if value.tzinfo is not None else value.strftime("%Y-%m-%dT%H:%M:%S")


def _time_zone(value: str | UnsetType | None, normalised: dict[str, Any], invalid: Invalid) -> None:
    if not isinstance(value, str):
        return
    zone = iana_zone(value)
    if zone is None:
        invalid.append({"name": "time_zone", "reason": "an IANA zone (Europe/Berlin) or a Windows zone id"})
        return
    normalised["time_zone"] = zone


def _listed(values: list[T] | UnsetType) -> list[T]:
    return [] if isinstance(values, UnsetType) else values


def _addresses(addresses: list[str], name: str, invalid: Invalid) -> None:
    for index, address in enumerate(addresses):
        if not MAIL_ADDRESS.fullmatch(address):
            invalid.append({"name": f"{name}[{index}]", "reason": "not a mail address"})
