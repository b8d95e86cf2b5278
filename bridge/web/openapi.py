"""The OpenAPI 3.1 document of `/api/v1/`, served at `/api/v1/openapi.json`.

Paths, parameters, security and answers are written here, next to the routes; every body schema is generated
from its declaration in `schemas.py`, the one the routes decode requests through. Tests check that every
registered route is described and that real answers validate against the document (OpenAPI 3.1 schemas are
JSON Schema 2020-12).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from bridge import __version__
from bridge.web import schemas

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
_REF = "#/components/schemas/{name}"


def _ref(kind: Any) -> dict[str, Any]:
    """The schema of a body declared in `schemas.py`, as it is written where the body appears: a reference."""
    (schema,), _ = msgspec.json.schema_components([kind], ref_template=_REF)
    return schema


_REASONS = {
    400: "invalid parameters",
    401: "no valid token",
    403: "the token lacks the scope",
    404: "unknown mailbox",
    410: "changes after the cursor were pruned (retention): read the current state, then the feed from `resume_after`",
}


def _problems(*statuses: int) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": _ref(schemas.Problem)}}
    return {str(status): {"description": _REASONS[status], "content": problem} for status in statuses}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _read_paths() -> dict[str, Any]:
    return {
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
                    "200": _json("changes after the cursor", _ref(schemas.ChangesPage)),
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
                    "200": _json("appointments by start", _ref(schemas.AppointmentList)),
                    **_problems(400, 401, 403, 404),
                },
            },
            "post": _create_appointment(),
        },
        "/api/v1/mailboxes/{mailbox}/timeline": {
            "get": {
                "summary": "The effective presence: overlaps resolved by the mapping's precedence",
                "security": [{"bearer": ["workforce"]}],
                "parameters": [_MAILBOX, *_SPAN],
                "responses": {
                    "200": _json("non-overlapping segments by start", _ref(schemas.Timeline)),
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
        schema = _ref(schemas.Conflict412) if status == 412 else _ref(schemas.Problem)
        answers[str(status)] = {
            "description": _WRITE_REASONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
    return answers


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _write_paths() -> dict[str, Any]:
    return {
        "/api/v1/mailboxes/{mailbox}/appointments/{id}": {
            "patch": {
                "summary": "Change an appointment the mailbox owner organised (id: the bridge id or the Exchange id)",
                "security": [{"bearer": ["workforce"]}],
                "parameters": [_MAILBOX, _ID, _IF_MATCH, _IDEMPOTENCY_KEY],
                "requestBody": _body(_ref(schemas.SomeChange)),
                "responses": {
                    "200": _json("changed in Exchange", _ref(schemas.WrittenAppointment)),
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
                "requestBody": _body(_ref(schemas.State)),
                "responses": {
                    "200": _json("written in Exchange", _ref(schemas.WrittenAppointment)),
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
                    "200": _json("what was (or would be) deleted", _ref(schemas.Purge)),
                    **_write_problems(400, 401, 403, 404, 409, 422, 502, 503),
                },
            }
        },
        "/api/v1/mail": {
            "post": {
                "summary": "Send mail from the configured sender",
                "security": [{"bearer": ["workforce"]}],
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body(_ref(schemas.Mail)),
                "responses": {
                    "202": _json("handed to Exchange", _ref(schemas.MailSent)),
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
                    "200": _json("the command", _ref(schemas.Command)),
                    **_write_problems(401, 403, 404),
                },
            }
        },
    }


def _create_appointment() -> dict[str, Any]:
    return {
        "summary": "Create an appointment with the template's free/busy state",
        "security": [{"bearer": ["workforce"]}],
        "parameters": [_MAILBOX, _IDEMPOTENCY_KEY],
        "requestBody": _body(_ref(schemas.NewAppointment)),
        "responses": {
            "201": _json("created in Exchange", _ref(schemas.WrittenAppointment)),
            **_write_problems(400, 401, 403, 404, 409, 413, 422, 502, 503),
        },
    }


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
    problem = {"application/problem+json": {"schema": _ref(schemas.Problem)}}
    return {str(status): {"description": reasons[status], "content": problem} for status in statuses}


_ADMIN_MAILBOX = {"name": "mailbox", "in": "path", "required": True, "schema": {"type": "string"}}


def _admin_action(summary: str, *, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": ["admin"]}],
        "parameters": [_ADMIN_MAILBOX],
        "responses": {"200": _json("the mailbox now", _ref(schemas.AdminMailbox)), **_admin_problems(401, 403, 404)},
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
        operation["responses"].update(_admin_problems(400, 413))
    return operation


def _admin_paths() -> dict[str, Any]:
    return {
        "/api/v1/admin/mailboxes": {
            "get": {
                "summary": "Every mailbox the bridge knows, by address",
                "security": [{"bearer": ["admin"]}],
                "responses": {
                    "200": _json("the mailboxes", _ref(schemas.MailboxList)),
                    **_admin_problems(401, 403),
                },
            },
            "post": {
                "summary": "Mirror another mailbox (or mirror a removed or disabled one again); it syncs within "
                "seconds",
                "security": [{"bearer": ["admin"]}],
                "requestBody": _body(_ref(schemas.NewMailbox)),
                "responses": {
                    "201": _json("the mailbox", _ref(schemas.AdminMailbox)),
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
                "requestBody": _body(_ref(schemas.Roster)),
                "responses": {
                    "200": _json("what was (or, with dry_run, would be) changed", _ref(schemas.RosterOutcome)),
                    **_admin_problems(400, 401, 403, 413),
                },
            }
        },
        "/api/v1/admin/sources/{source}/group/sync": {
            "post": {
                "summary": "Follow the source's Entra ID group now: enrol new members, remove those who left",
                "description": "What the periodic refresh (sources.NAME.group.refresh) does, at once. Members with a "
                "problem (no mail address, no workforce id, a workforce id listed twice or held by another active "
                "mailbox, a mailbox Exchange refuses, a mailbox disabled by hand) are skipped with the reason; the "
                "rest is applied in one transaction.",
                "security": [{"bearer": ["admin"]}],
                "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(schemas.GroupSync)}},
                },
                "responses": {
                    "200": _json("what was (or, with dry_run, would be) changed", _ref(schemas.GroupOutcome)),
                    **_admin_problems(400, 401, 403, 413),
                    "404": {
                        "description": "the source has no group",
                        "content": {"application/problem+json": {"schema": _ref(schemas.Problem)}},
                    },
                    "503": {
                        "description": "the group could not be read (unknown group, a missing permission, Graph down)",
                        "content": {"application/problem+json": {"schema": _ref(schemas.Problem)}},
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
                body=_ref(schemas.Disable),
            )
        },
        "/api/v1/admin/mailboxes/{mailbox}/resync": {
            "post": _admin_action("Read the mailbox's whole window again; only real differences are emitted")
        },
        "/api/v1/admin/mailboxes/{mailbox}": {
            "delete": {
                "summary": "Stop mirroring a mailbox: a deletion for every appointment shown, then its mirror is "
                "forgotten",
                "security": [{"bearer": ["admin"]}],
                "parameters": [_ADMIN_MAILBOX],
                "responses": {
                    "200": _json("the mailbox, now disabled, and the deletions emitted", _ref(schemas.MailboxRemoved)),
                    **_admin_problems(401, 403, 404),
                },
            }
        },
        "/api/v1/admin/status": {
            "get": {
                "summary": "How the bridge stands: sources, mailboxes, subscriptions, delivery backlog and errors",
                "security": [{"bearer": ["admin"]}],
                "responses": {"200": _json("the status now", _ref(schemas.AdminStatus)), **_admin_problems(401, 403)},
            }
        },
        "/api/v1/admin/templates": {
            "get": {
                "summary": "The template mapping file and what is in force",
                "security": [{"bearer": ["admin"]}],
                "responses": {
                    "200": _json("the mapping", _ref(schemas.TemplateMappingFile)),
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
                    "200": _json("the mapping now in force", _ref(schemas.TemplateMappingFile)),
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
                    "content": {"application/json": {"schema": _ref(schemas.ApplyMapping)}},
                },
                "responses": {
                    "200": _json("the mapping now in force", _ref(schemas.TemplateMappingFile)),
                    **_admin_problems(
                        400, 401, 403, 409, 413, conflict="no change is held, or the one held has another digest"
                    ),
                },
            }
        },
    }


@cache
def document() -> dict[str, Any]:
    """The document, built once; callers read it and never change it."""
    declared = [
        kind
        for kind in vars(schemas).values()
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and kind.__module__ == schemas.__name__
    ]
    _, components = msgspec.json.schema_components(declared, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exchange presence bridge",
            "version": __version__,
            "description": "What the bridge holds and emits for the workforce system (docs/api.md).",
        },
        "paths": {**_read_paths(), **_write_paths(), **_admin_paths()},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def query_parameters(path: str, method: str) -> frozenset[str] | None:
    """The query parameters the document gives `method` on `path` (a route's canonical form); None when it does
    not describe that operation."""
    item = document()["paths"].get(path)
    operation = item.get(method.lower()) if item is not None else None
    if item is None or not isinstance(operation, dict):
        return None
    parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
    return frozenset(parameter["name"] for parameter in parameters if parameter.get("in") == "query")
