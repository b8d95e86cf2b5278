"""The OpenAPI 3.1 document of `/api/v1/`, served at `/api/v1/openapi.json`.

Written here, next to the routes, and kept true by a test that checks every registered route is described and
that real answers validate against the schemas below (OpenAPI 3.1 schemas are JSON Schema 2020-12).
"""

from __future__ import annotations

from typing import Any

from bridge import __version__

_INSTANT = {"type": "string", "format": "date-time", "examples": ["2026-11-24T09:00:00Z"]}
# What a write accepts: an instant with an offset, or the person's wall-clock time or date (docs/api.md).
_WRITTEN_TIME = {
    "type": "string",
    "description": "an ISO 8601 date-time with an offset (an instant), or without one or a date: local time in "
    "time_zone, else in the mailbox's zone",
    "examples": ["2026-11-24T09:00:00Z", "2026-11-24T09:00:00", "2026-11-24"],
}
_TIME_ZONE = {
    "type": "string",
    "maxLength": 64,
    "description": "IANA zone (Europe/Berlin) or Windows zone id (W. Europe Standard Time); default: the mailbox's",
    "examples": ["Europe/Berlin"],
}
_ZONE_SHOWN = {"type": ["string", "null"], "description": "the person's IANA zone; null until the bridge read it"}
_DATE = {"type": "string", "format": "date"}
_SPAN = [
    {
        "name": "from",
        "in": "query",
        "required": False,
        "description": "ISO 8601 date or date-time (UTC when no offset); default: today 00:00 UTC",
        "schema": {"type": "string"},
    },
    {
        "name": "to",
        "in": "query",
        "required": False,
        "description": "ISO 8601 date or date-time; default: today + days_ahead; at most 400 days after from",
        "schema": {"type": "string"},
    },
]
_MAILBOX = {"name": "mailbox", "in": "path", "required": True, "schema": {"type": "string", "format": "email"}}
_HEADER = {
    "mailbox": {"type": "string"},
    "workforce_id": {"type": ["string", "null"]},
    "time_zone": _ZONE_SHOWN,
    "from": _INSTANT,
    "to": _INSTANT,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_REASONS = {
    400: "invalid parameters",
    401: "no valid token",
    403: "the token lacks the scope",
    404: "unknown mailbox",
    410: "changes after the cursor were pruned (retention): read the current state, then the feed from `resume_after`",
}


def _problems(*statuses: int) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    return {str(status): {"description": _REASONS[status], "content": problem} for status in statuses}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SCHEMAS: dict[str, Any] = {
    "Appointment": {
        "type": "object",
        "required": ["id", "template", "free_busy", "start", "end", "all_day"],
        "properties": {
            "id": {"type": "string", "description": "the Exchange item id of the instance"},
            "template": {"type": "string"},
            "free_busy": {"enum": ["tentative", "busy", "oof", "workingElsewhere"]},
            "start": _INSTANT,
            "end": _INSTANT,
            "all_day": {"type": "boolean"},
            "start_date": {**_DATE, "description": "all-day only: the first day, in the person's zone"},
            "end_date": {**_DATE, "description": "all-day only: the day after the last, in the person's zone"},
            "subject": {"type": "string", "description": "absent when the appointment is private"},
        },
    },
    "HeldAppointment": {
        "allOf": [
            _ref("Appointment"),
            {
                "type": "object",
                "required": ["origin", "version"],
                "properties": {
                    "origin": {"enum": ["exchange", "bridge"]},
                    "version": {"type": "string", "description": "Exchange's change key"},
                },
            },
        ]
    },
    "Change": {
        "type": "object",
        "required": ["id", "type", "sequence", "occurred_at", "mailbox", "workforce_id", "appointment"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "stable: de-duplicate on it"},
            "type": {"enum": ["appointment.created", "appointment.updated", "appointment.deleted"]},
            "sequence": {"type": "integer", "minimum": 1, "description": "per mailbox, without gaps"},
            "occurred_at": _INSTANT,
            "mailbox": {"type": "string"},
            "workforce_id": {"type": ["string", "null"]},
            "time_zone": _ZONE_SHOWN,
            "appointment": _ref("Appointment"),
        },
    },
    "Segment": {
        "type": "object",
        "required": ["start", "end", "template", "free_busy", "appointment_id"],
        "properties": {
            "start": _INSTANT,
            "end": _INSTANT,
            "template": {"type": "string"},
            "free_busy": {"enum": ["tentative", "busy", "oof", "workingElsewhere"]},
            "appointment_id": {"type": "string"},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "invalid_params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/v1/changes": {
        "get": {
            "summary": "The change feed, oldest first",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": _json(
                    "changes after the cursor",
                    {
                        "type": "object",
                        "required": ["changes", "next_after"],
                        "properties": {
                            "changes": {"type": "array", "items": _ref("Change")},
                            "next_after": {"type": "integer"},
                        },
                    },
                ),
                **_problems(400, 401, 403, 410),
            },
        }
    },
    "/api/v1/mailboxes/{mailbox}/appointments": {
        "get": {
            "summary": "The mapped appointments the bridge holds, one for one",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_MAILBOX, *_SPAN],
            "responses": {
                "200": _json(
                    "appointments by start",
                    {
                        "type": "object",
                        "required": [*_HEADER, "appointments"],
                        "properties": {**_HEADER, "appointments": {"type": "array", "items": _ref("HeldAppointment")}},
                    },
                ),
                **_problems(400, 401, 403, 404),
            },
        }
    },
    "/api/v1/mailboxes/{mailbox}/timeline": {
        "get": {
            "summary": "The effective presence: overlaps resolved by the mapping's precedence",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_MAILBOX, *_SPAN],
            "responses": {
                "200": _json(
                    "non-overlapping segments by start",
                    {
                        "type": "object",
                        "required": [*_HEADER, "segments"],
                        "properties": {**_HEADER, "segments": {"type": "array", "items": _ref("Segment")}},
                    },
                ),
                **_problems(400, 401, 403, 404),
            },
        }
    },
}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same key returns the first answer and does nothing twice (Graph transactionId)",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "the appointment's version; without it the answer is 428",
    "schema": {"type": "string"},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_WRITE_REASONS = {
    400: "invalid body, parameters or headers (invalid_params names each)",
    401: "no valid token",
    403: "the token lacks the scope",
    404: "unknown mailbox or appointment",
    409: "the mailbox is disabled or paused, the appointment is an invitation, or the same key is still in progress",
    412: "the appointment changed since that version: `current` holds it now",
    413: "the body is too large",
    422: "the Idempotency-Key was used for a different request",
    428: "If-Match is missing",
    502: "Exchange refused the request",
    503: "Exchange is throttling or cannot be reached; retry after Retry-After",
}


def _write_problems(*statuses: int) -> dict[str, Any]:
    answers = {}
    for status in statuses:
        schema = _ref("Conflict412") if status == 412 else _ref("Problem")
        answers[str(status)] = {
            "description": _WRITE_REASONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
    return answers


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_WRITE_SCHEMAS: dict[str, Any] = {
    "Recurrence": {
        "type": "object",
        "additionalProperties": False,
        "required": ["pattern", "until"],
        "properties": {
            "pattern": {"enum": ["daily", "weekly"]},
            "interval": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
            "days_of_week": {
                "type": "array",
                "uniqueItems": True,
                "items": {"enum": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]},
            },
            "until": {"type": "string", "format": "date", "description": "at most today + the mapping's days_ahead"},
        },
    },
    "NewAppointment": {
        "type": "object",
        "additionalProperties": False,
        "required": ["template", "start", "end"],
        "properties": {
            "template": {"type": "string", "description": "a template the mapping defines"},
            "start": _WRITTEN_TIME,
            "end": _WRITTEN_TIME,
            "time_zone": _TIME_ZONE,
            "all_day": {"type": "boolean", "description": "default: the template's all_day"},
            "subject": {"type": "string", "maxLength": 255, "description": "default: the template's subject or name"},
            "body": {"type": "string", "maxLength": 32768},
            "recurrence": _ref("Recurrence"),
        },
    },
    "AppointmentChange": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "template": {"type": "string"},
            "start": _WRITTEN_TIME,
            "end": _WRITTEN_TIME,
            "time_zone": _TIME_ZONE,
            "all_day": {"type": "boolean"},
            "subject": {"type": "string", "maxLength": 255},
            "body": {"type": "string", "maxLength": 32768},
        },
    },
    "WrittenAppointment": {
        "type": "object",
        "required": ["id", "exchange_id", "version", "template", "free_busy", "start", "end", "all_day", "subject"],
        "properties": {
            "id": {"type": "string", "description": "the bridge id (a create) or the id the request named"},
            "exchange_id": {"type": "string"},
            "version": {"type": "string", "description": "send it as If-Match to change or delete the appointment"},
            "template": {"type": ["string", "null"]},
            "free_busy": {"enum": ["free", "tentative", "busy", "oof", "workingElsewhere", "unknown"]},
            "start": _INSTANT,
            "end": _INSTANT,
            "all_day": {"type": "boolean"},
            "subject": {"type": "string"},
            "recurrence": _ref("Recurrence"),
            "replaced": {"type": ["string", "null"], "description": "state: the previous state appointment"},
        },
    },
    "Conflict412": {
        "allOf": [
            _ref("Problem"),
            {"type": "object", "properties": {"current": {"anyOf": [_ref("WrittenAppointment"), {"type": "null"}]}}},
        ]
    },
    "State": {
        "type": "object",
        "additionalProperties": False,
        "required": ["template"],
        "properties": {
            "template": {"type": "string"},
            "until": {**_WRITTEN_TIME, "description": "default: the template's state_until, in the person's days"},
            "time_zone": _TIME_ZONE,
        },
    },
    "Mail": {
        "type": "object",
        "additionalProperties": False,
        "required": ["to", "subject", "body"],
        "properties": {
            "to": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "email"}},
            "cc": {"type": "array", "items": {"type": "string", "format": "email"}},
            "bcc": {"type": "array", "items": {"type": "string", "format": "email"}},
            "subject": {"type": "string", "maxLength": 255},
            "body": {"type": "string"},
            "content_type": {"enum": ["text", "html"], "default": "text"},
        },
    },
    "Purge": {
        "type": "object",
        "required": ["dry_run", "items", "deleted"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "deleted": {"type": "integer", "minimum": 0},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["exchange_id", "bridge_id", "kind", "subject", "start", "end"],
                    "properties": {
                        "exchange_id": {"type": "string"},
                        "bridge_id": {"type": ["string", "null"]},
                        "kind": {"enum": ["singleInstance", "seriesMaster", "occurrence", "exception"]},
                        "subject": {"type": "string"},
                        "start": _INSTANT,
                        "end": _INSTANT,
                        "free_busy": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "Command": {
        "type": "object",
        "required": ["id", "kind", "mailbox", "status", "http_status", "result", "error", "attempts", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"enum": ["create", "update", "delete", "state", "mail", "purge"]},
            "mailbox": {"type": ["string", "null"]},
            "status": {"enum": ["sending", "done", "failed"]},
            "http_status": {"type": ["integer", "null"]},
            "result": {"type": ["object", "null"]},
            "error": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "created_at": _INSTANT,
            "finished_at": {"anyOf": [_INSTANT, {"type": "null"}]},
        },
    },
}
_SCHEMAS.update(_WRITE_SCHEMAS)

_WRITE_PATHS: dict[str, Any] = {
    "/api/v1/mailboxes/{mailbox}/appointments/{id}": {
        "patch": {
            "summary": "Change an appointment the mailbox owner organised (id: the bridge id or the Exchange id)",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_MAILBOX, _ID, _IF_MATCH, _IDEMPOTENCY_KEY],
            "requestBody": _body(_ref("AppointmentChange")),
            "responses": {
                "200": _json("changed in Exchange", _ref("WrittenAppointment")),
                **_write_problems(400, 401, 403, 404, 409, 412, 413, 422, 428, 502, 503),
            },
        },
        "delete": {
            "summary": "Delete an appointment the mailbox owner organised, without sending cancellations",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_MAILBOX, _ID, _IF_MATCH, _IDEMPOTENCY_KEY],
            "responses": {
                "204": {"description": "deleted (or already gone)"},
                **_write_problems(400, 401, 403, 404, 409, 412, 422, 428, 502, 503),
            },
        },
    },
    "/api/v1/mailboxes/{mailbox}/state": {
        "put": {
            "summary": "Set the current state: an appointment from now, replacing the previous state appointment",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_MAILBOX, _IDEMPOTENCY_KEY],
            "requestBody": _body(_ref("State")),
            "responses": {
                "200": _json("written in Exchange", _ref("WrittenAppointment")),
                **_write_problems(400, 401, 403, 404, 409, 413, 422, 502, 503),
            },
        }
    },
    "/api/v1/mailboxes/{mailbox}/bridge-items": {
        "delete": {
            "summary": "Delete every appointment the bridge made in the calendar (found by its extended property)",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [
                _MAILBOX,
                _IDEMPOTENCY_KEY,
                {
                    "name": "dry_run",
                    "in": "query",
                    "required": False,
                    "description": "true: only list what would be deleted",
                    "schema": {"enum": ["true", "false"]},
                },
            ],
            "responses": {
                "200": _json("what was (or would be) deleted", _ref("Purge")),
                **_write_problems(400, 401, 403, 404, 409, 422, 502, 503),
            },
        }
    },
    "/api/v1/mail": {
        "post": {
            "summary": "Send mail from the configured sender",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_IDEMPOTENCY_KEY],
            "requestBody": _body(_ref("Mail")),
            "responses": {
                "202": _json(
                    "handed to Exchange",
                    {
                        "type": "object",
                        "required": ["id", "sender"],
                        "properties": {"id": {"type": "string"}, "sender": {"type": "string"}},
                    },
                ),
                **_write_problems(400, 401, 403, 409, 413, 422, 502, 503),
            },
        }
    },
    "/api/v1/commands/{id}": {
        "get": {
            "summary": "A command's status and answer (also after a restart)",
            "security": [{"bearer": ["workforce"]}],
            "parameters": [_ID],
            "responses": {
                "200": _json("the command", _ref("Command")),
                **_write_problems(401, 403, 404),
            },
        }
    },
}
_PATHS["/api/v1/mailboxes/{mailbox}/appointments"]["post"] = {
    "summary": "Create an appointment with the template's free/busy state",
    "security": [{"bearer": ["workforce"]}],
    "parameters": [_MAILBOX, _IDEMPOTENCY_KEY],
    "requestBody": _body(_ref("NewAppointment")),
    "responses": {
        "201": _json("created in Exchange", _ref("WrittenAppointment")),
        **_write_problems(400, 401, 403, 404, 409, 413, 422, 502, 503),
    },
}
_PATHS.update(_WRITE_PATHS)


_ADMIN_REASONS = {
    400: "invalid body or parameters (invalid_params names each)",
    401: "no valid token",
    403: "the token lacks the scope",
    404: "unknown mailbox",
    413: "the body is too large",
    415: "the body is not YAML text",
}


def _admin_problems(*statuses: int, conflict: str = "") -> dict[str, Any]:
    reasons = {**_ADMIN_REASONS, 409: conflict}
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    return {str(status): {"description": reasons[status], "content": problem} for status in statuses}


_ADMIN_MAILBOX = {"name": "mailbox", "in": "path", "required": True, "schema": {"type": "string"}}
_ADMIN_SCHEMAS: dict[str, Any] = {
    "AdminMailbox": {
        "type": "object",
        "required": ["address", "workforce_id", "source", "status", "reason", "last_synced_at", "dirty"],
        "properties": {
            "address": {"type": "string"},
            "workforce_id": {"type": ["string", "null"]},
            "source": {"type": "string"},
            "status": {"enum": ["active", "disabled", "paused"]},
            "reason": {"type": ["string", "null"], "description": "why it is disabled or paused"},
            "last_synced_at": {"anyOf": [_INSTANT, {"type": "null"}]},
            "dirty": {"type": "boolean", "description": "a sync is pending"},
            "time_zone": _ZONE_SHOWN,
        },
    },
    "NewMailbox": {
        "type": "object",
        "additionalProperties": False,
        "required": ["address", "workforce_id"],
        "properties": {
            "address": {"type": "string", "format": "email"},
            "workforce_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "source": {"type": "string", "description": "a configured source; default: the only one, if one"},
        },
    },
    "Roster": {
        "type": "object",
        "additionalProperties": False,
        "required": ["mailboxes"],
        "properties": {
            "mailboxes": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "address": {"type": "string"},
                        "workforce_id": {"type": "string"},
                        "source": {"type": "string", "description": "a configured source; default: the only one"},
                    },
                },
            },
            "dry_run": {"type": "boolean", "description": "check and report what would change; change nothing"},
            "check_exchange": {
                "type": "boolean",
                "description": "first ask Exchange for every mailbox to start syncing; refuse those it refuses",
            },
        },
    },
    "RosterOutcome": {
        "type": "object",
        "required": ["dry_run", "added", "reenabled", "updated", "unchanged"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "added": {"type": "array", "items": {"type": "string"}},
            "reenabled": {"type": "array", "items": {"type": "string"}},
            "updated": {"type": "array", "items": {"type": "string"}, "description": "workforce id or source"},
            "unchanged": {"type": "integer", "minimum": 0},
        },
    },
    "GroupSync": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "dry_run": {"type": "boolean", "description": "read the group and report what would change; change nothing"}
        },
    },
    "GroupOutcome": {
        "type": "object",
        "required": ["dry_run", "added", "reenabled", "updated", "unchanged", "removed", "skipped"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "added": {"type": "array", "items": {"type": "string"}},
            "reenabled": {"type": "array", "items": {"type": "string"}, "description": "members the group had removed"},
            "updated": {
                "type": "array",
                "items": {"type": "string"},
                "description": "workforce id, or now the group's",
            },
            "unchanged": {"type": "integer", "minimum": 0},
            "removed": {"type": "array", "items": {"type": "string"}, "description": "no longer members"},
            "skipped": {
                "type": "array",
                "description": "members left as they are, each with the reason (name: member ADDRESS)",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "TemplateMappingFile": {
        "type": "object",
        "required": ["path", "editable", "yaml", "templates", "days_ahead", "ignore_prefix", "held"],
        "properties": {
            "path": {"type": "string"},
            "editable": {"type": "boolean", "description": "false: the shipped default, or a file it may not write"},
            "yaml": {"type": "string", "description": "the file's text now"},
            "templates": {"type": "array", "items": {"type": "string"}},
            "days_ahead": {"type": "integer"},
            "ignore_prefix": {"type": "string"},
            "held": {
                "anyOf": [_ref("HeldMappingChange"), {"type": "null"}],
                "description": "a change of the file that would withdraw too much, waiting for confirmation",
            },
        },
    },
    "HeldMappingChange": {
        "type": "object",
        "required": ["digest", "since", "approved", "created", "updated", "withdrawn", "mailboxes"],
        "properties": {
            "digest": {"type": "string", "description": "SHA-256 (hex) of the held file"},
            "since": _INSTANT,
            "approved": {"type": "boolean", "description": "confirmed; it is being applied"},
            "created": {"type": "integer", "minimum": 0},
            "updated": {"type": "integer", "minimum": 0},
            "withdrawn": {"type": "integer", "minimum": 0},
            "mailboxes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["address", "shown", "created", "updated", "withdrawn", "examples"],
                    "properties": {
                        "address": {"type": "string"},
                        "shown": {"type": "integer", "minimum": 0, "description": "appointments shown now"},
                        "created": {"type": "integer", "minimum": 0},
                        "updated": {"type": "integer", "minimum": 0},
                        "withdrawn": {"type": "integer", "minimum": 0},
                        "examples": {
                            "type": "object",
                            "description": "up to three lines per kind of change (created, updated, withdrawn)",
                            "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
_SCHEMAS.update(_ADMIN_SCHEMAS)

_NULLABLE_TEXT = {"type": ["string", "null"]}


def _record(**properties: Any) -> dict[str, Any]:
    """An object with every one of `properties` present (null where a value may be missing)."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _listed(description: str, **properties: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": _record(**properties)}


_STATUS_SCHEMAS: dict[str, Any] = {
    "AdminStatus": {
        **_record(
            at=_INSTANT,
            sources=_listed(
                "every configured source and its state",
                name={"type": "string"},
                kind={"enum": ["graph", "ews"]},
                status={"enum": ["ok", "auth_failed", "unreachable"]},
                reason=_NULLABLE_TEXT,
                since=_INSTANT,
            ),
            mailboxes=_record(
                by_source={
                    "type": "object",
                    "description": "per source, the number of mailboxes in each status",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["active", "disabled", "paused"],
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                },
                attention=_listed(
                    "disabled or paused mailboxes, and active ones with a note, latest first",
                    address={"type": "string"},
                    source={"type": "string"},
                    status={"enum": ["active", "disabled", "paused"]},
                    reason=_NULLABLE_TEXT,
                    since=_INSTANT,
                ),
                time_zones={
                    "type": "object",
                    "description": "per source, the number of mailboxes in each zone ('not read yet': the default)",
                    "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            ),
            subscriptions=_listed(
                "Graph subscriptions expiring soonest",
                mailbox={"type": "string"},
                source={"type": "string"},
                expires_at=_INSTANT,
                reauthorize_requested={"type": "boolean"},
            ),
            backlog=_record(
                undelivered={"type": "integer", "minimum": 0},
                oldest={"anyOf": [_INSTANT, {"type": "null"}]},
                oldest_age_s={"type": "number", "minimum": 0},
                failing={"type": "integer", "minimum": 0, "description": "undelivered after a failed attempt"},
            ),
            delivery_errors=_listed(
                "undelivered changes whose last attempt failed, latest failure first, with the receiver's answer",
                mailbox={"type": "string"},
                attempts={"type": "integer", "minimum": 0},
                error={"type": "string"},
                next_attempt_at=_INSTANT,
            ),
            sync_progress={
                "description": "mailboxes waiting for a sync (a first sync, a window roll) and how fast they go, "
                "or null when none waits",
                "anyOf": [
                    _record(
                        done={"type": "integer", "minimum": 0},
                        total={"type": "integer", "minimum": 0},
                        pending={"type": "integer", "minimum": 0},
                        since=_INSTANT,
                        rate_per_s={"type": "number", "minimum": 0, "description": "over the last minute"},
                        eta_s={"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                    ),
                    {"type": "null"},
                ],
            },
            mapping_change_held={
                "description": "a template mapping change held for confirmation (docs/templates.md), or null",
                "anyOf": [
                    _record(
                        since=_INSTANT,
                        withdrawn={"type": "integer", "minimum": 0},
                        approved={"type": "boolean", "description": "confirmed; the bridge is applying it"},
                    ),
                    {"type": "null"},
                ],
            },
        ),
        "description": "What `presence-bridge status` shows; lists hold at most 10 entries, most pressing first",
    }
}
_SCHEMAS.update(_STATUS_SCHEMAS)


def _admin_action(summary: str, *, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": ["admin"]}],
        "parameters": [_ADMIN_MAILBOX],
        "responses": {"200": _json("the mailbox now", _ref("AdminMailbox")), **_admin_problems(401, 403, 404)},
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
        operation["responses"].update(_admin_problems(400, 413))
    return operation


_ADMIN_PATHS: dict[str, Any] = {
    "/api/v1/admin/mailboxes": {
        "get": {
            "summary": "Every mailbox the bridge knows, by address",
            "security": [{"bearer": ["admin"]}],
            "responses": {
                "200": _json(
                    "the mailboxes",
                    {
                        "type": "object",
                        "required": ["mailboxes"],
                        "properties": {"mailboxes": {"type": "array", "items": _ref("AdminMailbox")}},
                    },
                ),
                **_admin_problems(401, 403),
            },
        },
        "post": {
            "summary": "Mirror another mailbox (or mirror a removed or disabled one again); it syncs within seconds",
            "security": [{"bearer": ["admin"]}],
            "requestBody": _body(_ref("NewMailbox")),
            "responses": {
                "201": _json("the mailbox", _ref("AdminMailbox")),
                **_admin_problems(
                    400,
                    401,
                    403,
                    409,
                    413,
                    conflict="the mailbox is mirrored already, or another active mailbox has the workforce id",
                ),
            },
        },
    },
    "/api/v1/admin/mailboxes/import": {
        "post": {
            "summary": "Enrol a roster: add, re-enable or update every mailbox listed, all or nothing",
            "description": "Refused whole, with each row's problems in invalid_params (name: mailboxes[i]), for a "
            "malformed address, a missing workforce id, an unknown source, an address or workforce id listed "
            "twice, a workforce id an active mailbox outside the roster holds, or (check_exchange) a mailbox "
            "Exchange refuses.",
            "security": [{"bearer": ["admin"]}],
            "requestBody": _body(_ref("Roster")),
            "responses": {
                "200": _json("what was (or, with dry_run, would be) changed", _ref("RosterOutcome")),
                **_admin_problems(400, 401, 403, 413),
            },
        }
    },
    "/api/v1/admin/sources/{source}/group/sync": {
        "post": {
            "summary": "Follow the source's Entra ID group now: enrol new members, remove those who left",
            "description": "What the periodic refresh (sources.NAME.group.refresh) does, at once. Members with a "
            "problem (no mail address, no workforce id, a workforce id listed twice or held by another active "
            "mailbox, a mailbox Exchange refuses, a mailbox disabled by hand) are skipped with the reason; the rest "
            "is applied in one transaction.",
            "security": [{"bearer": ["admin"]}],
            "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("GroupSync")}}},
            "responses": {
                "200": _json("what was (or, with dry_run, would be) changed", _ref("GroupOutcome")),
                **_admin_problems(400, 401, 403, 413),
                "404": {
                    "description": "the source has no group",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
                "503": {
                    "description": "the group could not be read (unknown group, a missing permission, Graph down)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
            },
        }
    },
    "/api/v1/admin/mailboxes/{mailbox}/enable": {
        "post": _admin_action("Resume a disabled or paused mailbox (a paused one may then apply its deletions)")
    },
    "/api/v1/admin/mailboxes/{mailbox}/disable": {
        "post": _admin_action(
            "Stop syncing a mailbox; what the workforce system shows stays",
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
            },
        )
    },
    "/api/v1/admin/mailboxes/{mailbox}/resync": {
        "post": _admin_action("Read the mailbox's whole window again; only real differences are emitted")
    },
    "/api/v1/admin/mailboxes/{mailbox}": {
        "delete": {
            "summary": "Stop mirroring a mailbox: a deletion for every appointment shown, then its mirror is forgotten",
            "security": [{"bearer": ["admin"]}],
            "parameters": [_ADMIN_MAILBOX],
            "responses": {
                "200": _json(
                    "the mailbox, now disabled, and the deletions emitted",
                    {
                        "type": "object",
                        "required": ["mailbox", "deleted_changes"],
                        "properties": {
                            "mailbox": _ref("AdminMailbox"),
                            "deleted_changes": {"type": "integer", "minimum": 0},
                        },
                    },
                ),
                **_admin_problems(401, 403, 404),
            },
        }
    },
    "/api/v1/admin/status": {
        "get": {
            "summary": "How the bridge stands: sources, mailboxes, subscriptions, delivery backlog and errors",
            "security": [{"bearer": ["admin"]}],
            "responses": {"200": _json("the status now", _ref("AdminStatus")), **_admin_problems(401, 403)},
        }
    },
    "/api/v1/admin/templates": {
        "get": {
            "summary": "The template mapping file and what is in force",
            "security": [{"bearer": ["admin"]}],
            "responses": {
                "200": _json("the mapping", _ref("TemplateMappingFile")),
                **_admin_problems(401, 403),
            },
        },
        "put": {
            "summary": "Replace the mapping file (validated first, replaced atomically, in force at once)",
            "security": [{"bearer": ["admin"]}],
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": {"type": "string", "description": "the whole file, UTF-8, at most 256 KiB"}}
                    for media in ("application/yaml", "text/yaml", "text/plain")
                },
            },
            "responses": {
                "200": _json("the mapping now in force", _ref("TemplateMappingFile")),
                **_admin_problems(
                    400,
                    401,
                    403,
                    409,
                    413,
                    415,
                    conflict="the shipped default is in force (set `templates:`) or the file is not writable",
                ),
            },
        },
    },
    "/api/v1/admin/templates/apply": {
        "post": {
            "summary": "Confirm the held change of the mapping file and apply it (docs/templates.md)",
            "security": [{"bearer": ["admin"]}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "digest": {"type": "string", "description": "confirm only if this change is held"}
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json("the mapping now in force", _ref("TemplateMappingFile")),
                **_admin_problems(
                    400, 401, 403, 409, 413, conflict="no change is held, or the one held has another digest"
                ),
            },
        }
    },
}
_PATHS.update(_ADMIN_PATHS)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exchange presence bridge",
            "version": __version__,
            "description": "What the bridge holds and emits for the workforce system (docs/api.md).",
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def query_parameters(path: str, method: str) -> frozenset[str] | None:
    """The query parameters the document gives `method` on `path` (a route's canonical form); None when it does
    not describe that operation."""
    item = _PATHS.get(path)
    operation = item.get(method.lower()) if item is not None else None
    if item is None or not isinstance(operation, dict):
        return None
    parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
    return frozenset(parameter["name"] for parameter in parameters if parameter.get("in") == "query")
