"""Meetings across the tenant's mailboxes: what Exchange's calendar attendant does for the attendees.

An event with attendees that its organizer writes in Outlook puts a copy in the calendar of every attendee who is
a user of the tenant with a mailbox: the same iCalUId, times, recurrence, subject, body and location, with
`isOrganizer` false, the organizer named, `responseStatus` notResponded and showAs tentative (Exchange shows an
unanswered request as tentative). What the organizer changes later is copied too; the attendee's answer stays.

Cancelling (the organizer deletes a meeting with attendees in Outlook, which sends the cancellation) does not
remove the copies: each is marked `isCancelled` with "Canceled: " before its subject, as Outlook shows it until the
person removes it from the calendar (recorded attendee payloads, docs/graph-source.md). Cancelling one occurrence
does the same to that occurrence of each copy, which becomes an exception. A cancelled copy keeps its showAs:
nothing frees the person's time except a client reading `isCancelled`.

Answers (`respond`): accepted takes the organizer's showAs, tentativelyAccepted shows tentative, declined keeps the
item and its showAs (a person may keep declined meetings in the calendar; their time is free only to a client
that reads `responseStatus`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from emulators.graph_common import GraphError, format_instant, now
from emulators.graph_events import Instance, Mailbox, StoredEvent, occurrence_id

if TYPE_CHECKING:
    from emulators.graph_model import GraphState

RESPONSES = ("accepted", "tentativelyAccepted", "declined")
CANCELLED_PREFIX = "Canceled: "
# What a copy shares with the organizer's event; showAs and the answer are the attendee's own.
_SHARED = ("subject", "body", "location", "sensitivity", "importance", "attendees")


class Meetings:
    def __init__(self, state: GraphState) -> None:
        self._state = state

    def invite(self, organizer: Mailbox, event: StoredEvent) -> None:
        """Copy a new meeting into each attendee's calendar."""
        for attendee in self._attendees(organizer, event):
            self._copy(organizer, attendee, event)

    def updated(self, organizer: Mailbox, instance: Instance) -> None:
        """The organizer changed a meeting, a series or one occurrence: the copies follow."""
        master = organizer.events.get(instance.master_id or instance.id)
        if master is None or not _organised_meeting(master):
            return
        for attendee in self._attendees(organizer, master):
            copy = _copy_in(attendee, master.ical_uid)
            if copy is None:
                self._copy(organizer, attendee, master)
            elif instance.original_start is not None and instance.type == "exception":
                attendee.update(
                    occurrence_id(copy.id, instance.original_start), _times(instance.event), as_outlook=True
                )
            else:
                attendee.update(copy.id, _shared(master) | _times(master), as_outlook=True)

    def cancelled(self, organizer: Mailbox, instance: Instance) -> None:
        """The organizer cancelled `instance` (already gone from their calendar): mark the copies cancelled."""
        event = instance.event
        master = event if instance.master_id is None else organizer.events.get(instance.master_id, event)
        if not _organised_meeting(master):
            return
        for attendee in self._attendees(organizer, master):
            copy = _copy_in(attendee, master.ical_uid)
            if copy is None:
                continue
            if instance.original_start is not None:
                _cancel(attendee, occurrence_id(copy.id, instance.original_start), master)
                continue
            _cancel(attendee, copy.id, master)
            for original in list(copy.exceptions):
                _cancel(attendee, occurrence_id(copy.id, original), master)

    def respond(self, mailbox: Mailbox, event_id: str, response: str) -> Instance:
        """The attendee answers an invitation (Graph's accept / tentativelyAccept / decline)."""
        if response not in RESPONSES:
            raise ValueError(f"response is one of {', '.join(RESPONSES)}, not {response!r}")
        instance = mailbox.get(event_id)
        props = instance.event.props
        if props.get("isOrganizer", True):
            raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. You are the organizer.")
        payload: dict[str, Any] = {"responseStatus": {"response": response, "time": format_instant(now())}}
        if response == "accepted":
            payload["showAs"] = self._organizer_show_as(instance.event)
        elif response == "tentativelyAccepted":
            payload["showAs"] = "tentative"
        return mailbox.update(event_id, payload, as_outlook=True)

    def _copy(self, organizer: Mailbox, attendee: Mailbox, event: StoredEvent) -> None:
        owner = organizer.owner
        payload = (
            _shared(event)
            | _times(event)
            | {
                "showAs": "tentative",
                "isOrganizer": False,
                "organizer": {"emailAddress": {"name": owner.display_name, "address": owner.mail}},
                "responseStatus": {"response": "notResponded", "time": "0001-01-01T00:00:00Z"},
            }
        )
        attendee.create(payload, as_outlook=True, ical_uid=event.ical_uid)

    def _attendees(self, organizer: Mailbox, event: StoredEvent) -> Iterator[Mailbox]:
        for attendee in event.props.get("attendees") or []:
            address = (attendee.get("emailAddress") or {}).get("address") if isinstance(attendee, dict) else None
            user = self._state.find_user(address) if isinstance(address, str) else None
            mailbox = self._state.mailboxes.get(user.id) if user is not None else None
            if mailbox is not None and mailbox is not organizer:
                yield mailbox

    def _organizer_show_as(self, copy: StoredEvent) -> str:
        address = ((copy.props.get("organizer") or {}).get("emailAddress") or {}).get("address")
        user = self._state.find_user(address) if isinstance(address, str) else None
        organizer = self._state.mailboxes.get(user.id) if user is not None else None
        original = _copy_in(organizer, copy.ical_uid) if organizer is not None else None
        return str(original.props.get("showAs", "busy")) if original is not None else "busy"


def _organised_meeting(event: StoredEvent) -> bool:
    return event.props.get("isOrganizer", True) is not False and bool(event.props.get("attendees"))


def _copy_in(mailbox: Mailbox, ical_uid: str) -> StoredEvent | None:
    return next((event for event in mailbox.events.values() if event.ical_uid == ical_uid), None)


def _shared(event: StoredEvent) -> dict[str, Any]:
    return {name: event.props[name] for name in _SHARED if name in event.props}


def _times(event: StoredEvent) -> dict[str, Any]:
    times: dict[str, Any] = {"start": event.start.to_graph(), "end": event.end.to_graph()}
    if event.type != "exception":
        times["isAllDay"] = event.is_all_day
    if event.recurrence is not None:
        times["recurrence"] = event.recurrence.to_graph()
    return times


def _cancel(attendee: Mailbox, event_id: str, master: StoredEvent) -> None:
    subject = str(master.props.get("subject", ""))
    attendee.update(event_id, {"isCancelled": True, "subject": CANCELLED_PREFIX + subject}, as_outlook=True)
