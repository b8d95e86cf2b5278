"""EWS `t:CalendarItem` elements decoded into the bridge's own types, without exchangelib's item models.

exchangelib already parses each answer with lxml; turning those elements into its `CalendarItem` objects is what
costs (about 870 µs per item measured for an 800-item CalendarView, most of it in per-field `from_xml`). Reading
the handful of fields the bridge needs straight off the element costs a few µs per item (docs/ews-source.md).
Elements are typed structurally (`Element`): this module imports neither lxml nor exchangelib.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.domain import Appointment, AppointmentKind, FreeBusy, utc

TNS = "{http://schemas.microsoft.com/exchange/services/2006/types}"

# The same named property Graph's source writes (graph_wire.BRIDGE_PROPERTY_ID), so an item marked through either
# API reads as the bridge's through both; the transaction id travels in a second property of the same set.
BRIDGE_PROPERTY_SET = "5b9e3c1a-8f1d-4a57-9a63-2f0c6f1f8b27"
BRIDGE_REF_NAME = "PresenceBridgeRef"
TRANSACTION_NAME = "PresenceBridgeTransaction"

FREE_BUSY = {
    "Free": FreeBusy.FREE,
    "Tentative": FreeBusy.TENTATIVE,
    "Busy": FreeBusy.BUSY,
    "OOF": FreeBusy.OOF,
    "WorkingElsewhere": FreeBusy.WORKING_ELSEWHERE,
    "NoData": FreeBusy.UNKNOWN,
}
LEGACY_FREE_BUSY = {value: key for key, value in FREE_BUSY.items()}
_KINDS = {
    "Single": AppointmentKind.SINGLE,
    "Occurrence": AppointmentKind.OCCURRENCE,
    "Exception": AppointmentKind.EXCEPTION,
    "RecurringMaster": AppointmentKind.SERIES_MASTER,
}


class Element(Protocol):
    """What the decoder uses of an lxml (or ElementTree) element."""

    @property
    def tag(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...

    def __iter__(self) -> Iterator[Element]: ...


@dataclass(frozen=True, slots=True)
class WireItem:
    """One `t:CalendarItem` as far as the bridge reads it."""

    item_id: str
    change_key: str
    item_type: str = "Single"
    start: datetime | None = None
    end: datetime | None = None
    subject: str = ""
    free_busy: str = "Busy"
    sensitivity: str = "Normal"
    is_all_day: bool = False
    my_response: str = "Organizer"
    is_cancelled: bool = False
    uid: str | None = None
    bridge_ref: str | None = None
    transaction_id: str | None = None
    modified_at: datetime | None = None

    @property
    def in_series(self) -> bool:
        return self.item_type in ("Occurrence", "Exception")

    @property
    def withdrawn(self) -> bool:
        """In the calendar but not on the person's time: cancelled by its organizer, or declined and kept."""
        return self.is_cancelled or self.my_response == "Decline"


def _instant(text: str | None) -> datetime | None:
    # EWS writes UTC instants as `2026-03-05T08:00:00Z` (TimeZoneContext UTC); fromisoformat reads the Z since 3.11.
    return utc(datetime.fromisoformat(text)) if text else None


def _truth(text: str | None) -> bool:
    return text is not None and text.strip() in ("true", "1")


def decode_item(elem: Element) -> WireItem:
    """One item element; unknown children are skipped, so extra fields in the shape cost nothing but bytes."""
    fields: dict[str, object] = {}
    item_id = change_key = ""
    for child in elem:
        name = child.tag[len(TNS) :] if child.tag.startswith(TNS) else child.tag
        if name == "ItemId":
            item_id = child.get("Id") or ""
            change_key = child.get("ChangeKey") or ""
        elif name == "Subject":
            fields["subject"] = child.text or ""
        elif name == "Start":
            fields["start"] = _instant(child.text)
        elif name == "End":
            fields["end"] = _instant(child.text)
        elif name == "LegacyFreeBusyStatus":
            fields["free_busy"] = child.text or "Busy"
        elif name == "Sensitivity":
            fields["sensitivity"] = child.text or "Normal"
        elif name == "IsAllDayEvent":
            fields["is_all_day"] = _truth(child.text)
        elif name == "MyResponseType":
            fields["my_response"] = child.text or "Organizer"
        elif name == "IsCancelled":
            fields["is_cancelled"] = _truth(child.text)
        elif name == "CalendarItemType":
            fields["item_type"] = child.text or "Single"
        elif name == "LastModifiedTime":
            fields["modified_at"] = _instant(child.text)
        elif name == "UID":
            fields["uid"] = child.text
        elif name == "ExtendedProperty":
            _extended(child, fields)
    return WireItem(item_id, change_key, **fields)  # type: ignore[arg-type]


def _extended(prop: Element, fields: dict[str, object]) -> None:
    name = value = None
    for part in prop:
        if part.tag == TNS + "ExtendedFieldURI":
            if (part.get("PropertySetId") or "").lower() == BRIDGE_PROPERTY_SET:
                name = part.get("PropertyName")
        elif part.tag == TNS + "Value":
            value = part.text or ""
    if name == BRIDGE_REF_NAME:
        fields["bridge_ref"] = value
    elif name == TRANSACTION_NAME:
        fields["transaction_id"] = value


def decode_items(elems: Iterable[Element]) -> list[WireItem]:
    return [decode_item(elem) for elem in elems]


def to_appointment(item: WireItem, series_id: str | None = None) -> Appointment:
    """An item as a domain `Appointment`; `series_id` is the master's ItemId for an occurrence or exception."""
    if item.start is None or item.end is None:
        raise ValueError(f"EWS item {item.item_id} came without Start or End")
    return Appointment(
        item_id=item.item_id,
        change_key=item.change_key,
        start=item.start,
        end=item.end,
        free_busy=FREE_BUSY.get(item.free_busy, FreeBusy.UNKNOWN),
        subject=item.subject,
        all_day=item.is_all_day,
        private=item.sensitivity in ("Private", "Confidential"),
        # MyResponseType is Organizer on what the owner organised; an invitation carries the owner's response.
        is_organizer=item.my_response == "Organizer",
        kind=_KINDS.get(item.item_type, AppointmentKind.SINGLE),
        series_id=series_id if item.in_series else None,
        bridge_ref=item.bridge_ref or None,
        transaction_id=item.transaction_id or None,
        modified_at=item.modified_at,
    )
