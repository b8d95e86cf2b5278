"""The query side of the REST API: what the bridge holds for a mailbox, as appointments or as a timeline.

`GET /api/v1/mailboxes/{mailbox}/appointments?from=&to=` lists the mapped appointments one for one;
`GET /api/v1/mailboxes/{mailbox}/timeline?from=&to=` resolves overlaps by the mapping's precedence into the
non-overlapping segments a presence board shows. Both read the mirror only: no call to Exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bridge.domain import MirrorItem, PresenceEntry, Window, iso_utc
from bridge.store import Database, MailboxRow
from bridge.store.mirror import load_mirror
from bridge.store.outbox import appointment_json
from bridge.store.work import find_mailbox
from bridge.sync import last_shown
from bridge.templates import TemplateMapping
from bridge.web.bodies import parse_instant
from bridge.web.problems import problem
from bridge.zones import UTC_ZONE

# A year and a bit: enough for any presence board, small enough that one answer stays small.
MAX_SPAN = timedelta(days=400)


class AppointmentQueries:
    def __init__(
        self,
        db: Database,
        mapping: Callable[[], TemplateMapping],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._mapping = mapping
        self._clock = clock

    async def appointments(self, request: web.Request) -> web.StreamResponse:
        found = await self._read(request)
        if isinstance(found, web.Response):
            return found
        mailbox, window, shown = found
        zone = mailbox.time_zone or UTC_ZONE
        listed = [_appointment(item, entry, zone) for item, entry in shown if window.overlaps(entry.start, entry.end)]
        return web.json_response({**_header(mailbox, window), "appointments": listed})

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        found = await self._read(request)
        if isinstance(found, web.Response):
            return found
        mailbox, window, shown = found
        segments = self._mapping().timeline((entry for _, entry in shown), window)
        body = [
            {
                "start": iso_utc(segment.start),
                "end": iso_utc(segment.end),
                "template": segment.template,
                "free_busy": segment.free_busy.value,
                "appointment_id": segment.item_id,
            }
            for segment in segments
        ]
        return web.json_response({**_header(mailbox, window), "segments": body})

    async def _read(
        self, request: web.Request
    ) -> web.Response | tuple[MailboxRow, Window, list[tuple[MirrorItem, PresenceEntry]]]:
        mapping = self._mapping()
        window = _window(request, mapping, self._clock())
        if isinstance(window, web.Response):
            return window
        address = request.match_info["mailbox"]
        found = await self._db.run(lambda session: _mailbox_and_mirror(session, address))
        if found is None:
            return problem(404, "Not Found", f"the bridge mirrors no mailbox {address}")
        mailbox, mirror = found
        shown = [(item, entry) for item in mirror.values() if (entry := last_shown(item, mapping)) is not None]
        shown.sort(key=lambda pair: (pair[1].start, pair[1].item_id))
        return mailbox, window, shown


def _mailbox_and_mirror(session: Session, address: str) -> tuple[MailboxRow, dict[str, MirrorItem]] | None:
    mailbox = find_mailbox(session, address)
    if mailbox is None or mailbox.id is None:
        return None
    return mailbox, load_mirror(session, mailbox.id)


def _window(request: web.Request, mapping: TemplateMapping, now: datetime) -> Window | web.Response:
    """[from, to) from the query; by default the mirrored span, [today, today + days_ahead)."""
    default = Window.days_ahead(now.date(), mapping.days_ahead)
    bounds: dict[str, datetime] = {}
    invalid = []
    for name, fallback in (("from", default.start), ("to", default.end)):
        text = request.query.get(name)
        if text is None:
            bounds[name] = fallback
            continue
        parsed = parse_instant(text)
        if parsed is None:
            invalid.append({"name": name, "reason": "an ISO 8601 date or date-time, e.g. 2026-11-24T09:00:00Z"})
        else:
            bounds[name] = parsed
    if invalid:
        return problem(400, "Bad Request", "the query has invalid parameters", invalid_params=invalid)
    if bounds["to"] <= bounds["from"]:
        return problem(400, "Bad Request", "to must be after from", invalid_params=[{"name": "to", "reason": "≤ from"}])
    if bounds["to"] - bounds["from"] > MAX_SPAN:
        reason = f"at most {MAX_SPAN.days} days after from"
        return problem(400, "Bad Request", f"the span is {reason}", invalid_params=[{"name": "to", "reason": reason}])
    return Window(bounds["from"], bounds["to"])


def _header(mailbox: MailboxRow, window: Window) -> dict[str, Any]:
    return {
        "mailbox": mailbox.address,
        "workforce_id": mailbox.workforce_id,
        "time_zone": mailbox.time_zone,
        "from": iso_utc(window.start),
        "to": iso_utc(window.end),
    }


def _appointment(item: MirrorItem, entry: PresenceEntry, zone: str) -> dict[str, Any]:
    origin = "bridge" if item.appointment.bridge_ref else "exchange"
    return {**appointment_json(entry, zone), "origin": origin, "version": item.appointment.change_key}
