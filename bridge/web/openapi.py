"""The OpenAPI 3.1 document of `/api/v1/`, served at `/api/v1/openapi.json`.

Written here, next to the routes, and kept true by a test that checks every registered route is described and
that real answers validate against the schemas below (OpenAPI 3.1 schemas are JSON Schema 2020-12).
"""

from __future__ import annotations

from typing import Any

from bridge import __version__

_INSTANT = {"type": "string", "format": "date-time", "examples": ["2026-11-24T09:00:00Z"]}
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
    "from": _INSTANT,
    "to": _INSTANT,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_REASONS = {400: "invalid parameters", 401: "no valid token", 403: "the token lacks the scope", 404: "unknown mailbox"}


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
                {"name": "after", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
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
                **_problems(400, 401, 403),
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
