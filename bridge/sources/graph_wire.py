"""Graph's JSON payloads decoded into the bridge's own types (DESIGN §3.1).

The SDK's kiota models rebuild a field-deserializer table for every object (about 11 ms an event on a 1,000-event
page); msgspec decodes the same page straight into these structs in microseconds. Only the fields the bridge
reads are declared; msgspec skips the rest without building them.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from bridge.domain import Appointment, AppointmentKind, DirectoryMember, FreeBusy, Notification, Subscription
from bridge.sources.watching import MalformedNotification

T = TypeVar("T")
# The named extended property that marks the items the bridge created (the GUID is the bridge's own
# property-set id: it must never change, or existing items stop being recognised).
BRIDGE_PROPERTY_ID = "String {5b9e3c1a-8f1d-4a57-9a63-2f0c6f1f8b27} Name PresenceBridgeRef"


class WireDateTime(msgspec.Struct, frozen=True):
    dateTime: str
    timeZone: str = "UTC"


class WireRemoved(msgspec.Struct, frozen=True):
    reason: str = "deleted"


class WireResponseStatus(msgspec.Struct, frozen=True):
    response: str = "none"


class WireExtendedProperty(msgspec.Struct, frozen=True):
    id: str
    value: str | None = None


class WireEvent(msgspec.Struct, frozen=True, rename="camel"):
    """An event, an occurrence stub (id, type, seriesMasterId, start, end only) or an `@removed` marker."""

    id: str
    etag: str | None = msgspec.field(default=None, name="@odata.etag")
    removed: WireRemoved | None = msgspec.field(default=None, name="@removed")
    type: str = "singleInstance"
    change_key: str | None = None
    subject: str | None = None
    show_as: str | None = None
    sensitivity: str | None = None
    is_all_day: bool | None = None
    is_organizer: bool | None = None
    is_cancelled: bool | None = None
    response_status: WireResponseStatus | None = None
    series_master_id: str | None = None
    transaction_id: str | None = None
    last_modified_date_time: str | None = None
    start: WireDateTime | None = None
    end: WireDateTime | None = None
    single_value_extended_properties: list[WireExtendedProperty] | None = None


class WireEventPage(msgspec.Struct, frozen=True):
    value: list[WireEvent] = []
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")
    delta_link: str | None = msgspec.field(default=None, name="@odata.deltaLink")


class WireErrorDetail(msgspec.Struct, frozen=True):
    code: str = ""
    message: str = ""


class WireError(msgspec.Struct, frozen=True):
    error: WireErrorDetail = WireErrorDetail()


class WireSubscription(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    expiration_date_time: str
    resource: str = ""
    notification_url: str = ""


class WireSubscriptionPage(msgspec.Struct, frozen=True):
    value: list[WireSubscription] = []
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class WireMember(msgspec.Struct, frozen=True, rename="camel"):
    """A directoryObject of `GET /groups/{id}/transitiveMembers`: a user, a group, a device, a contact..."""

    id: str
    odata_type: str = msgspec.field(default="", name="@odata.type")
    mail: str | None = None
    user_principal_name: str | None = None
    employee_id: str | None = None


class WireMemberPage(msgspec.Struct, frozen=True):
    value: list[WireMember] = []
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class WireResourceData(msgspec.Struct, frozen=True):
    """An Outlook change notification's `resourceData`: the item's id and `@odata.etag` (W/"<changeKey>")."""

    id: str | None = None
    etag: str | None = msgspec.field(default=None, name="@odata.etag")


class WireNotification(msgspec.Struct, frozen=True, rename="camel"):
    """A change or lifecycle notification item (the `value` entries POSTed to the bridge's hooks): only what the
    receiver uses (DESIGN §1); the rest of an item is skipped unread."""

    subscription_id: str
    client_state: str | None = None
    lifecycle_event: str | None = None
    change_type: str | None = None
    resource_data: WireResourceData | None = None


class WireNotifications(msgspec.Struct, frozen=True):
    value: list[WireNotification]


_page_decoder = msgspec.json.Decoder(WireEventPage)
_notifications_decoder = msgspec.json.Decoder(WireNotifications)
_event_decoder = msgspec.json.Decoder(WireEvent)
_error_decoder = msgspec.json.Decoder(WireError)
_subscription_decoder = msgspec.json.Decoder(WireSubscription)
_subscription_page_decoder = msgspec.json.Decoder(WireSubscriptionPage)
_member_page_decoder = msgspec.json.Decoder(WireMemberPage)
_encoder = msgspec.json.Encoder()
USER_TYPE = "#microsoft.graph.user"


class WireMailboxSettings(msgspec.Struct, frozen=True, rename="camel"):
    time_zone: str | None = None


class WireBatchAnswer(msgspec.Struct, frozen=True):
    """One answer of a `$batch` response: its request's id, status, headers and body (kept raw, decoded by what
    the request was)."""

    id: str
    status: int
    headers: dict[str, str] = {}
    body: msgspec.Raw = msgspec.Raw()

    def header(self, name: str) -> str | None:
        """A header's value; the name in any case (HTTP header names are case-insensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


class WireBatchResponse(msgspec.Struct, frozen=True):
    responses: list[WireBatchAnswer]


_batch_decoder = msgspec.json.Decoder(WireBatchResponse)


class WireDecodeError(ValueError):
    """Graph answered with something that is not the documented shape."""


def decode_page(body: bytes) -> WireEventPage:
    return _decoded(_page_decoder, body, "event page from Graph")


def decode_event(body: bytes) -> WireEvent:
    return _decoded(_event_decoder, body, "event from Graph")


def decode_time_zone(body: bytes) -> str | None:
    """The Windows or IANA zone name in a mailboxSettings answer (None or empty: the user never set one)."""
    try:
        return msgspec.json.decode(body, type=WireMailboxSettings).time_zone or None
    except msgspec.DecodeError as exc:
        raise WireDecodeError(f"malformed mailboxSettings from Graph: {exc}") from exc


def decode_batch(body: bytes) -> list[WireBatchAnswer]:
    """The answers of a `$batch` response, in the order Graph lists them (which is any order)."""
    return _decoded(_batch_decoder, body, "$batch response from Graph").responses


def decode_notifications(body: bytes) -> tuple[Notification, ...]:
    """A body POSTed to the bridge's hooks (the `NotificationDecoder` of Graph's change detection, watching.py)."""
    try:
        items = _notifications_decoder.decode(body).value
    except msgspec.DecodeError as exc:
        raise MalformedNotification(f"malformed notification body: {exc}") from exc
    return tuple(_notification(item) for item in items)


def _notification(item: WireNotification) -> Notification:
    data = item.resource_data
    etag = data.etag if data is not None else None
    return Notification(
        item.subscription_id,
        item.client_state,
        item.lifecycle_event,
        change_type=item.change_type,
        item_id=data.id if data is not None else None,
        change_key=_change_key(etag) if etag else None,
    )


def decode_subscription(body: bytes, mailbox: str) -> Subscription:
    return _subscription(_decoded(_subscription_decoder, body, "subscription from Graph"), mailbox)


def decode_subscription_page(body: bytes) -> tuple[list[Subscription], str | None]:
    """A page of `GET /subscriptions`; each mailbox is read from the resource (`/users/{id}/events`)."""
    page = _decoded(_subscription_page_decoder, body, "subscription list from Graph")
    return [_subscription(item, _resource_user(item.resource)) for item in page.value], page.next_link


def decode_member_page(body: bytes) -> WireMemberPage:
    return _decoded(_member_page_decoder, body, "member list from Graph")


def _decoded(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WireDecodeError(f"malformed {what}: {exc}") from exc


def to_member(item: WireMember) -> DirectoryMember:
    attributes = {
        "employeeId": item.employee_id,
        "mail": item.mail,
        "userPrincipalName": item.user_principal_name,
        "id": item.id,
    }
    return DirectoryMember(item.id, item.mail.lower() if item.mail else None, attributes)


def _resource_user(resource: str) -> str:
    parts = resource.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "users" else ""


def _subscription(wire: WireSubscription, mailbox: str) -> Subscription:
    return Subscription(wire.id, mailbox, parse_instant(wire.expiration_date_time), wire.notification_url)


def decode_error(body: bytes) -> WireErrorDetail:
    """The `error` object of a failed answer; an empty one when the body is not Graph's error shape."""
    try:
        return _error_decoder.decode(body).error
    except msgspec.DecodeError:
        return WireErrorDetail()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def parse_instant(value: str) -> datetime:
    """An ISO 8601 timestamp with an offset or `Z` (subscription expiry), as aware UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_datetime(value: WireDateTime) -> datetime:
    """Graph's {dateTime, timeZone} pair as aware UTC.

    The bridge asks for `Prefer: outlook.timezone="UTC"`, so the zone is UTC in practice; an IANA zone is still
    honoured, since the header is a preference a proxy could drop.
    """
    local = datetime.fromisoformat(value.dateTime)
    if value.timeZone in ("UTC", "Etc/UTC", "tzone://Microsoft/Utc"):
        return local.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(value.timeZone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WireDecodeError(f"Graph answered in time zone {value.timeZone!r}; the bridge asks for UTC") from exc
    return local.replace(tzinfo=zone).astimezone(UTC)


_FREE_BUSY = {member.value: member for member in FreeBusy}
_KINDS = {member.value: member for member in AppointmentKind}


def change_key_of(event: WireEvent) -> str:
    """The event's changeKey; stubs carry only `@odata.etag` (W/"<changeKey>")."""
    if event.change_key:
        return event.change_key
    if event.etag:
        return _change_key(event.etag)
    return ""


def _change_key(etag: str) -> str:
    """The change key inside an `@odata.etag` (W/"<changeKey>")."""
    return etag.removeprefix("W/").strip('"')


def bridge_ref_of(event: WireEvent) -> str | None:
    for prop in event.single_value_extended_properties or ():
        if prop.id.lower() == BRIDGE_PROPERTY_ID.lower():
            return prop.value
    return None


def withdrawn(event: WireEvent, master: WireEvent | None = None) -> bool:
    """Whether the instance is in the calendar without being on the person's time: its organizer cancelled it
    (`isCancelled`), or the person declined it and kept it (`responseStatus.response` "declined").

    A stub carries neither field: it is withdrawn when its series is. An exception comes in full and may be
    cancelled on its own (the organizer cancelled that one occurrence).
    """
    for details in (event, master):
        if details is None:
            continue
        if details.is_cancelled:
            return True
        if details.response_status is not None and details.response_status.response == "declined":
            return True
    return False


def to_appointment(event: WireEvent, master: WireEvent | None = None) -> Appointment:
    """An event (or an occurrence stub completed from its series master) as a domain `Appointment`.

    A stub has no subject or showAs of its own: those come from `master`; its times and change key are its own.
    """
    details = master if master is not None else event
    if event.start is None or event.end is None:
        raise WireDecodeError(f"event {event.id} has no start or end")
    return Appointment(
        item_id=event.id,
        change_key=change_key_of(event),
        start=parse_datetime(event.start),
        end=parse_datetime(event.end),
        free_busy=_FREE_BUSY.get(details.show_as or "", FreeBusy.UNKNOWN),
        subject=details.subject or "",
        all_day=bool(details.is_all_day),
        private=details.sensitivity in ("private", "confidential"),
        is_organizer=details.is_organizer is not False,
        kind=_KINDS.get(event.type, AppointmentKind.SINGLE),
        series_id=event.series_master_id,
        bridge_ref=bridge_ref_of(event) or bridge_ref_of(details),
        transaction_id=details.transaction_id,
        # A stub's own time is not given, and its master's may be weeks old: better unknown than wrong.
        modified_at=_instant(event.last_modified_date_time),
    )


def token_roles(token: str) -> frozenset[str] | None:
    """The application permissions (`roles` claim) an Entra access token carries; None when it cannot be read.

    Graph's app-only tokens are JWTs whose claims a client may read (Microsoft's "access token claims
    reference"); they are not verified here: Graph verifies them, this only names what is missing.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    # Entra leaves the claim out of a token whose app was granted no application permission at all.
    roles = claims.get("roles", [])
    return frozenset(str(role) for role in roles) if isinstance(roles, list) else None


def _instant(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text).astimezone(UTC) if text else None
    except ValueError:
        return None  # only a metric reads it: a malformed time must not fail the read
