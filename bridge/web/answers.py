"""The relay's outcomes as HTTP answers: the status code, the JSON body or problem document, `Retry-After`.

The one place that knows which status each outcome of a command gets (docs/api.md). `record` is what the relay
stores for a command (given to it by the service), so that a retry with the same idempotency key and
`GET /api/v1/commands/{id}` show the very answer the first request got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from aiohttp import web

from bridge import outcomes
from bridge.domain import Appointment, FreeBusy, iso_utc
from bridge.outcomes import AppointmentView, Outcome, Recorded
from bridge.web.problems import PROBLEM_TYPE, problem_document


@dataclass(frozen=True, slots=True)
class Answer:
    """A status and a JSON body (a problem document when `problem`)."""

    status: int
    body: dict[str, Any] | None = None
    problem: bool = False
    retry_after: int | None = None


def answer(outcome: Outcome) -> Answer:
    match outcome:
        case outcomes.Created(view, recurrence):
            body = appointment_view(view)
            if recurrence is not None:
                body["recurrence"] = recurrence
            return Answer(201, body)
        case outcomes.StateSet(view, replaced):
            return Answer(200, {**appointment_view(view), "replaced": replaced})
        case outcomes.Updated(view):
            return Answer(200, appointment_view(view))
        case outcomes.Deleted():
            return Answer(204)
        case outcomes.Purged(items, dry_run):
            listed = [_purged(item) for item in items]
            return Answer(200, {"dry_run": dry_run, "items": listed, "deleted": 0 if dry_run else len(items)})
        case outcomes.MailAccepted(command_id, sender):
            return Answer(202, {"id": command_id, "sender": sender})
        case outcomes.NotFound(detail):
            return _problem(404, "Not Found", detail)
        case outcomes.Conflict(detail, retry_after):
            return _problem(409, "Conflict", detail, retry_after)
        case outcomes.Stale(detail, current):
            shown = None if current is None else appointment_view(current)
            return _problem(412, "Precondition Failed", detail, current=shown)
        case outcomes.Invalid(detail, problems):
            return _problem(400, "Bad Request", detail, invalid_params=list(problems))
        case outcomes.KeyReused(detail):
            invalid = [{"name": "Idempotency-Key", "reason": detail}]
            return _problem(422, "Unprocessable Content", detail, invalid_params=invalid)
        case outcomes.Unavailable(detail, retry_after):
            return _problem(503, "Service Unavailable", detail, retry_after)
        case outcomes.ExchangeFailed(detail):
            return _problem(502, "Bad Gateway", detail)
        case outcomes.Replayed(recorded):
            return Answer(recorded.status, recorded.body, problem=recorded.status >= 400)
        case _:
            assert_never(outcome)


def record(outcome: Outcome) -> Recorded:
    given = answer(outcome)
    error = (given.body or {}).get("detail") if given.problem else None
    return Recorded(given.status, given.body, error)


def respond(given: Answer) -> web.Response:
    if given.body is None:
        response = web.Response(status=given.status)
    elif given.problem:
        response = web.json_response(given.body, status=given.status, content_type=PROBLEM_TYPE)
    else:
        response = web.json_response(given.body, status=given.status)
    if given.retry_after is not None:
        response.headers["Retry-After"] = str(given.retry_after)
    return response


def appointment_view(view: AppointmentView) -> dict[str, Any]:
    appointment = view.appointment
    return {
        "id": view.bridge_id,
        "exchange_id": appointment.item_id,
        "version": appointment.change_key,
        "template": view.template,
        "free_busy": appointment.free_busy.value,
        "start": iso_utc(appointment.start),
        "end": iso_utc(appointment.end),
        "all_day": appointment.all_day,
        "subject": appointment.subject,
    }


def _problem(status: int, title: str, detail: str, retry_after: int | None = None, **extra: Any) -> Answer:
    return Answer(status, problem_document(status, title, detail, **extra), problem=True, retry_after=retry_after)


def _purged(item: Appointment) -> dict[str, Any]:
    return {
        "exchange_id": item.item_id,
        "bridge_id": item.bridge_ref,
        "kind": item.kind.value,
        "subject": item.subject,
        "start": iso_utc(item.start),
        "end": iso_utc(item.end),
        "free_busy": item.free_busy.value if item.free_busy != FreeBusy.UNKNOWN else None,
    }
