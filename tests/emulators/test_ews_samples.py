"""The EWS emulator's answers have the structure of Exchange's, as tests/fixtures/ews/EWS_SAMPLES.md shows.

Each test sends a raw SOAP request and checks that every element path and attribute name of the sample's
answer (from its `{Operation}Response`, ResponseMessage or Fault down) also occurs in the emulator's answer;
values and prefixes are not compared.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import ALICE, SERVICE_PASSWORD, SERVICE_USER, ews_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(30)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "ews" / "EWS_SAMPLES.md"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
_WRAP = f'<sample xmlns:s="{SOAP}" xmlns:m="{MNS}" xmlns:t="{TNS}">{{}}</sample>'


def sample(*markers: str) -> ET.Element:
    """The first XML block of the samples file containing every marker, parsed (fragments are wrapped)."""
    text = SAMPLES.read_text(encoding="utf-8")
    for block in re.findall(r"```xml\n(.*?)```", text, re.DOTALL):
        if all(marker in block for marker in markers):
            cleaned = re.sub(r"<\?xml[^>]*\?>", "", block).replace("…", "")
            cleaned = re.sub(r">\s*\.\.\.\s*<", "><", cleaned)
            return ET.fromstring(_WRAP.format(cleaned))
    raise LookupError(f"no sample with {markers}")


def paths(elem: ET.Element, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    here = (*prefix, elem.tag)
    yield here
    for name in elem.attrib:
        if not name.startswith("{http://www.w3.org/XML/1998/namespace}"):
            yield (*here, f"@{name}")
    for child in elem:
        yield from paths(child, here)


def assert_shaped_like(ours: ET.Element, theirs: ET.Element, tag: str) -> None:
    mine = next(ours.iter(tag))
    sample_elem = next(theirs.iter(tag))
    missing = set(paths(sample_elem)) - set(paths(mine))
    assert not missing, f"missing in the emulator's answer: {sorted(missing)}"


def request(operation: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}" xmlns:m="{MNS}" xmlns:t="{TNS}">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID>'
        f"<t:PrimarySmtpAddress>{ALICE}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        f"</s:Header><s:Body>{operation}</s:Body></s:Envelope>"
    )


async def post(ews: EwsEmulator, operation: str) -> tuple[int, ET.Element]:
    token = base64.b64encode(f"{SERVICE_USER}:{SERVICE_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"}
    async with aiohttp.ClientSession() as session, session.post(ews.url, data=request(operation), headers=headers) as r:
        return r.status, ET.fromstring(await r.read())


def calendar_view(start: str, end: str, max_entries: int | None = None) -> str:
    limit = f' MaxEntriesReturned="{max_entries}"' if max_entries else ""
    return (
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>'
        '<t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="calendar:Start"/>'
        '<t:FieldURI FieldURI="calendar:End"/></t:AdditionalProperties></m:ItemShape>'
        f'<m:CalendarView{limit} StartDate="{start}" EndDate="{end}"/>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>'
    )


def two_items(ews: EwsEmulator) -> list[str]:
    return [
        ews.create_item_as_outlook(ALICE, subject=name, start=datetime(2026, 3, day, 9), end=datetime(2026, 3, day, 10))
        for day, name in ((2, "Contoso devs team meeting"), (3, "Daily status meeting"))
    ]


async def test_get_folder_answer_has_the_samples_shape(ews: EwsEmulator) -> None:
    status, answer = await post(
        ews,
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>"
        '<t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>',
    )

    assert status == 200
    theirs = sample("GetFolderResponse", "CalendarFolder")
    assert_shaped_like(answer, theirs, f"{{{MNS}}}GetFolderResponse")
    info = next(answer.iter(f"{{{TNS}}}ServerVersionInfo"))
    assert set(next(theirs.iter(f"{{{TNS}}}ServerVersionInfo")).attrib) <= set(info.attrib)


async def test_truncated_calendar_view_has_the_samples_shape(ews: EwsEmulator) -> None:
    two_items(ews)

    _, answer = await post(ews, calendar_view("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", max_entries=1))

    assert_shaped_like(answer, sample("FindItemResponse", 'TotalItemsInView="33"'), f"{{{MNS}}}FindItemResponse")
    root = next(answer.iter(f"{{{MNS}}}RootFolder"))
    assert (root.get("TotalItemsInView"), root.get("IncludesLastItemInRange")) == ("2", "false")


async def test_range_error_has_the_samples_shape(ews: EwsEmulator) -> None:
    _, answer = await post(ews, calendar_view("2026-01-01T00:00:00Z", "2028-01-02T00:00:00Z"))

    assert_shaped_like(answer, sample("ErrorCalendarViewRangeTooBig"), f"{{{MNS}}}FindItemResponse")
    assert next(answer.iter(f"{{{MNS}}}ResponseCode")).text == "ErrorCalendarViewRangeTooBig"


async def test_find_count_error_has_the_samples_shape(ews: EwsEmulator) -> None:
    two_items(ews)
    ews.find_count_limit = 1

    _, answer = await post(ews, calendar_view("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z"))

    assert_shaped_like(answer, sample("ErrorExceededFindCountLimit"), f"{{{MNS}}}FindItemResponseMessage")
    assert next(answer.iter(f"{{{TNS}}}Value")).attrib == {"Name": "PolicyLimit"}


async def test_get_item_answer_has_the_samples_shape(ews: EwsEmulator) -> None:
    item_id = two_items(ews)[0]

    _, answer = await post(
        ews,
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI "
        f'FieldURI="item:Subject"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{item_id}"/>'
        "</m:ItemIds></m:GetItem>",
    )

    assert_shaped_like(answer, sample("GetItemResponse", "Tennis lesson"), f"{{{MNS}}}GetItemResponse")


async def test_create_update_and_delete_answers_have_the_samples_shape(ews: EwsEmulator) -> None:
    _, created = await post(
        ews,
        '<m:CreateItem SendMeetingInvitations="SendToNone"><m:Items><t:CalendarItem><t:Subject>Tennis lesson'
        "</t:Subject><t:Start>2026-03-21T19:00:00.000Z</t:Start><t:End>2026-03-21T20:00:00.000Z</t:End>"
        "</t:CalendarItem></m:Items></m:CreateItem>",
    )
    item = next(created.iter(f"{{{TNS}}}ItemId"))
    _, updated = await post(
        ews,
        '<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AlwaysOverwrite" '
        'SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item.get("Id")}" ChangeKey="{item.get("ChangeKey")}"/><t:Updates><t:SetItemField>'
        '<t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>Moved</t:Subject></t:CalendarItem>'
        "</t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>",
    )
    _, deleted = await post(
        ews,
        '<m:DeleteItem DeleteType="MoveToDeletedItems" SendMeetingCancellations="SendToAllAndSaveCopy">'
        f'<m:ItemIds><t:ItemId Id="{item.get("Id")}"/></m:ItemIds></m:DeleteItem>',
    )

    assert_shaped_like(created, sample("CreateItemResponse"), f"{{{MNS}}}CreateItemResponse")
    assert_shaped_like(updated, sample("UpdateItemResponse"), f"{{{MNS}}}UpdateItemResponse")
    assert_shaped_like(deleted, sample("DeleteItemResponse"), f"{{{MNS}}}DeleteItemResponse")
    assert ews.items(ALICE) == []


async def test_subscribe_answer_has_the_samples_shape(ews: EwsEmulator) -> None:
    _, answer = await post(
        ews,
        '<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="calendar"/>'
        "</t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes>"
        "</m:StreamingSubscriptionRequest></m:Subscribe>",
    )

    assert_shaped_like(answer, sample("SubscribeResponse", "SubscriptionId"), f"{{{MNS}}}SubscribeResponse")


async def test_server_busy_fault_has_the_samples_shape(ews: EwsEmulator) -> None:
    ews.server_busy(back_off_ms=297749)

    status, answer = await post(
        ews, '<m:GetFolder><m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>'
    )

    assert status == 500
    assert_shaped_like(answer, sample("a:ErrorServerBusy"), f"{{{SOAP}}}Fault")
    assert next(answer.iter("faultcode")).text == "a:ErrorServerBusy"
    assert next(answer.iter(f"{{{TNS}}}Value")).text == "297749"


async def test_impersonation_denied_fault_has_the_samples_shape(ews: EwsEmulator) -> None:
    ews.set_impersonation(SERVICE_USER, False)

    status, answer = await post(
        ews, '<m:GetFolder><m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>'
    )

    assert status == 500
    assert_shaped_like(answer, sample("a:ErrorImpersonateUserDenied"), f"{{{SOAP}}}Fault")
