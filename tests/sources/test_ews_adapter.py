"""The exchangelib internals bridge/sources/ews_adapter.py relies on: still there, still shaped and behaving as it
assumes, checked against the installed exchangelib and the EWS emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import inspect
import threading
from datetime import UTC, datetime
from typing import Any

import exchangelib
import pytest
import requests
from exchangelib import CalendarItem, Configuration
from exchangelib.errors import ErrorInvalidIdMalformed
from exchangelib.fields import FieldPath, InvalidField
from exchangelib.items import SEND_TO_NONE
from exchangelib.properties import CalendarView, ItemId
from exchangelib.protocol import BaseProtocol, CachingProtocol, Protocol
from exchangelib.services import FindItem, GetItem, GetStreamingEvents, SyncFolderItems
from exchangelib.services.common import EWSService

from bridge.sources import ews_adapter as adapter
from bridge.sources import ews_wire as wire
from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import EXCHANGE_2016, SERVICE_PASSWORD, SERVICE_USER, Connect

pytestmark = pytest.mark.timeout(30)

_MARCH = CalendarView(
    start=exchangelib.EWSDateTime(2026, 3, 1, tzinfo=exchangelib.UTC),
    end=exchangelib.EWSDateTime(2026, 4, 1, tzinfo=exchangelib.UTC),
)


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_installed_exchangelib_is_the_version_the_adapter_was_checked_against() -> None:
    assert exchangelib.__version__ == adapter.CHECKED_AGAINST, (
        "exchangelib was upgraded: re-check every internal listed in bridge/sources/ews_adapter.py against it "
        "(this file tests them), then set CHECKED_AGAINST"
    )


@pytest.mark.parametrize(
    ("function", "parameters"),
    [
        (EWSService._elem_to_obj, ["self", "elem"]),
        (FindItem._elem_to_obj, ["self", "elem"]),
        (GetItem._elem_to_obj, ["self", "elem"]),
        (SyncFolderItems._elem_to_obj, ["self", "elem"]),
        (
            FindItem.call,
            [
                "self",
                "folders",
                "additional_fields",
                "restriction",
                "order_fields",
                "shape",
                "query_string",
                "depth",
                "calendar_view",
                "max_items",
                "offset",
            ],
        ),
        (GetItem.call, ["self", "items", "additional_fields", "shape"]),
        (
            SyncFolderItems.call,
            [
                "self",
                "folder",
                "shape",
                "additional_fields",
                "sync_state",
                "ignore",
                "max_changes_returned",
                "sync_scope",
            ],
        ),
        (GetStreamingEvents._get_element_container, ["self", "message", "name"]),
        (GetStreamingEvents.call, ["self", "subscription_ids", "connection_timeout"]),
        (BaseProtocol.create_session, ["self"]),
        (CachingProtocol._cache_key, ["config"]),
        (CachingProtocol.__delitem__, ["cls", "config"]),
        (CalendarItem.register, ["attr_name", "attr_cls"]),
    ],
    ids=lambda value: getattr(value, "__qualname__", None) or "",
)
def test_the_internals_keep_their_signatures(function: Any, parameters: list[str]) -> None:
    assert _parameters(function) == parameters


def test_the_protocol_class_attributes_the_adapter_sets_per_instance_exist() -> None:
    assert isinstance(BaseProtocol.TIMEOUT, int | float)
    assert BaseProtocol.CONNECTIONS_PER_SESSION == 1
    assert isinstance(Protocol, CachingProtocol)


def test_the_bridge_properties_live_on_the_subclass_alone() -> None:
    assert adapter.BridgeCalendarItem.FIELDS is not CalendarItem.FIELDS
    for name in ("bridge_ref", "bridge_transaction"):
        assert adapter.BridgeCalendarItem.get_field_by_fieldname(name).name == name
        with pytest.raises(InvalidField):
            CalendarItem.get_field_by_fieldname(name)
    # Where register puts them (after HasAttachments): EWS answers a CreateItem out of schema order with an error.
    names = [field.name for field in adapter.BridgeCalendarItem.FIELDS]
    after = names.index(CalendarItem.INSERT_AFTER_FIELD)
    assert set(names[after + 1 : after + 3]) == {"bridge_ref", "bridge_transaction"}
    assert adapter.BridgeCalendarItem.ELEMENT_NAME == CalendarItem.ELEMENT_NAME


def _fields(*names: str) -> list[Any]:
    return [FieldPath(field=adapter.BridgeCalendarItem.get_field_by_fieldname(name)) for name in names]


async def test_raw_services_hand_back_elements_and_a_marked_item_round_trips(connect: Connect) -> None:
    account = connect()

    def scenario() -> tuple[list[Any], list[Any], list[Any], tuple[str, int, bool], tuple[str, int, bool]]:
        _, first, _ = adapter.sync_page(account, None, 512)
        item = adapter.BridgeCalendarItem(
            account=account,
            folder=account.calendar,
            subject="Visit",
            start=exchangelib.EWSDateTime(2026, 3, 5, 8, tzinfo=exchangelib.UTC),
            end=exchangelib.EWSDateTime(2026, 3, 5, 9, tzinfo=exchangelib.UTC),
            bridge_ref="ref-1",
            bridge_transaction="tx-1",
        )
        item.save(send_meeting_invitations=SEND_TO_NONE)
        fields = _fields("subject", "bridge_ref", "bridge_transaction")
        viewed = list(adapter.find_elements(account, fields, _MARCH))
        stored = list(adapter.find_elements(account, fields, None, page_size=10))
        got = list(adapter.get_elements(account, [ItemId(id=item.id), ItemId(id="AAMk-missing")], fields))
        changed = adapter.sync_page(account, first, 512)
        again = adapter.sync_page(account, changed[0], 512)
        return viewed, stored, got, changed, again

    viewed, stored, got, changed, again = await asyncio.to_thread(scenario)

    assert {element.tag for element in viewed + stored + got[:1]} == {f"{wire.TNS}CalendarItem"}
    for element in (viewed[0], stored[0], got[0]):
        decoded = wire.decode_item(element)
        assert (decoded.subject, decoded.bridge_ref, decoded.transaction_id) == ("Visit", "ref-1", "tx-1")
    assert isinstance(got[1], ErrorInvalidIdMalformed)  # per-item errors come back as exception objects, in order
    assert changed[1:] == (1, True)
    assert again[1:] == (0, True)


def _config(url: str) -> Configuration:
    return Configuration(
        service_endpoint=url,
        credentials=adapter.SourceCredentials(SERVICE_USER, SERVICE_PASSWORD),
        auth_type=exchangelib.BASIC,
        version=EXCHANGE_2016,
    )


def test_each_source_gets_its_own_protocol_and_can_drop_it_from_the_cache(ews: EwsEmulator) -> None:
    first, second = _config(ews.url), _config(ews.url)
    try:
        assert Protocol(config=first) is not Protocol(config=second)
        assert Protocol[first][0] is Protocol(config=first)  # (protocol, when it was made)
        adapter.forget_protocol(first)
        adapter.forget_protocol(first)  # twice: nothing left to drop is not an error
        with pytest.raises(KeyError):
            Protocol[first]
        assert Protocol[second] is not None
    finally:
        for config in (first, second):
            adapter.forget_protocol(config)


async def test_sessions_of_one_protocol_carry_the_mounted_adapter_and_its_timeout(ews: EwsEmulator) -> None:
    sent: list[str] = []

    class Recording(requests.adapters.HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(request.url)
            return super().send(request, *args, **kwargs)

    config, other = _config(ews.url), _config(ews.url)
    protocol, untouched = Protocol(config=config), Protocol(config=other)
    try:
        assert adapter.mount_on_sessions(protocol, Recording, 7.5)
        assert not adapter.mount_on_sessions(protocol, Recording, 7.5)
        session = protocol.get_session()
        assert isinstance(session.get_adapter(ews.url), Recording)
        assert protocol.TIMEOUT == 7.5
        assert untouched.TIMEOUT == BaseProtocol.TIMEOUT
        assert not isinstance(untouched.get_session().get_adapter(ews.url), Recording)
        protocol.release_session(session)
        account = exchangelib.Account(
            "alice@corp.example", config=config, autodiscover=False, access_type=exchangelib.IMPERSONATION
        )
        assert account.protocol is protocol
        # The emulator answers on this event loop: the blocking call runs on a thread.
        await asyncio.to_thread(lambda: list(adapter.find_elements(account, [], _MARCH)))
    finally:
        for made, config_of in ((protocol, config), (untouched, other)):
            made.close()
            adapter.forget_protocol(config_of)
    assert sent
    assert all(url == ews.url for url in sent)


async def test_a_stream_reports_frames_exposes_its_response_and_ends_when_interrupted(connect: Connect) -> None:
    account = connect()
    frames = threading.Event()
    ended = threading.Event()
    errors: list[Exception] = []
    subscription = await asyncio.to_thread(lambda: account.calendar.subscribe_to_streaming())
    service = adapter.StreamingEvents(account=account, on_frame=frames.set)

    def listen() -> None:
        try:
            for _ in service.call(subscription_ids=[subscription], connection_timeout=30):
                pass
        except Exception as exc:
            errors.append(exc)
        finally:
            ended.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert await asyncio.to_thread(frames.wait, 5.0)
    assert service._streaming_response is not None
    started = datetime.now(UTC)
    service.interrupt()
    assert await asyncio.to_thread(ended.wait, 5.0)
    assert (datetime.now(UTC) - started).total_seconds() < 2.0
    # The shut socket ends the chunked response early; the watcher ignores what a stopping stream raises.
    assert [type(error) for error in errors] == [requests.exceptions.ChunkedEncodingError]
