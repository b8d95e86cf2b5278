"""Every use the EWS source makes of exchangelib beyond its documented API, in one place.

Checked against exchangelib `CHECKED_AGAINST`; tests/sources/test_ews_adapter.py checks each assumption below
against the installed exchangelib and fails, naming it, when an upgrade changes one.

- The `FindItem`, `GetItem` and `SyncFolderItems` services and their `call(...)` keywords, with
  `EWSService._elem_to_obj(self, elem)` overridden to hand back the parsed lxml element (SyncFolderItems: its tag):
  `Folder.view()` would build item models, ~250 µs per item in `from_xml` against ~30 µs for decoding the
  elements (docs/ews-source.md, Decoding). `SyncFolderItems.sync_state` and `.includes_last_item_in_range` are
  the state and paging of one call.
- A class's own `FIELDS` (a `Fields` copy): the public `register` inserts into `cls.FIELDS`, which a subclass
  without fields of its own shares with `CalendarItem`; with its own copy, the bridge's extended properties live
  on `BridgeCalendarItem` alone and exchangelib's `CalendarItem` stays as it is for every other client.
- `CachingProtocol`: one protocol per (endpoint, credentials) for the process (`_cache_key`), `del Protocol[config]`
  to drop one. Credentials equal only to themselves give each source its own protocol.
- `BaseProtocol.create_session()`, `TIMEOUT`, `CONNECTIONS_PER_SESSION`, and `raw_session` mounting exchangelib's
  adapter on the endpoint URL: a per-source timeout and TLS trust without `HTTP_ADAPTER_CLS`, a class attribute
  every client in the process shares.
- `GetStreamingEvents._get_element_container(self, message, name=None)`, called once per frame: a good frame says
  the stream is up, and `ErrorExceededConnectionCount` is raised as an error that ends the call (exchangelib
  would retry it for ever). `EWSService._streaming_response`: the open response, whose socket is shut to stop a
  stream (exchangelib cannot cancel one).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
from exchangelib import CalendarItem, Credentials, ExtendedProperty
from exchangelib.errors import ErrorExceededConnectionCount
from exchangelib.items import ID_ONLY, SHALLOW
from exchangelib.properties import Fields
from exchangelib.protocol import Protocol
from exchangelib.services import FindItem, GetItem, GetStreamingEvents, SyncFolderItems

from bridge.sources import ews_wire as wire

CHECKED_AGAINST = "5.6.0"


class _BridgeRef(ExtendedProperty):  # type: ignore[misc]
    property_set_id = wire.BRIDGE_PROPERTY_SET
    property_name = wire.BRIDGE_REF_NAME
    property_type = "String"


class _BridgeTransaction(ExtendedProperty):  # type: ignore[misc]
    property_set_id = wire.BRIDGE_PROPERTY_SET
    property_name = wire.TRANSACTION_NAME
    property_type = "String"


class BridgeCalendarItem(CalendarItem):  # type: ignore[misc]
    """A `CalendarItem` with the bridge's two extended properties, `bridge_ref` and `bridge_transaction`.

    Registered on this subclass (which has its own FIELDS list) rather than on exchangelib's `CalendarItem`, so that
    no other exchangelib client in the process sees them; EWS still gets `t:CalendarItem` (the element name is
    inherited).
    """

    FIELDS = Fields(*CalendarItem.FIELDS)


BridgeCalendarItem.register("bridge_ref", _BridgeRef)
BridgeCalendarItem.register("bridge_transaction", _BridgeTransaction)


class _RawFindItem(FindItem):  # type: ignore[misc]
    def _elem_to_obj(self, elem: Any) -> Any:
        return elem


class _RawGetItem(GetItem):  # type: ignore[misc]
    def _elem_to_obj(self, elem: Any) -> Any:
        return elem


class _SyncChanges(SyncFolderItems):  # type: ignore[misc]
    def _elem_to_obj(self, elem: Any) -> Any:
        return elem.tag


def find_elements(account: Any, fields: list[Any], calendar_view: Any, page_size: int | None = None) -> Iterator[Any]:
    """FindItem on the account's calendar with an IdOnly shape plus `fields`: the `t:CalendarItem` elements (and
    per-item errors as exception objects); with `calendar_view` the instances in its span, else the stored items,
    paged by exchangelib."""
    service = _RawFindItem(account=account) if page_size is None else _RawFindItem(account=account, page_size=page_size)
    return service.call(  # type: ignore[no-any-return]
        folders=[account.calendar],
        additional_fields=fields,
        restriction=None,
        order_fields=None,
        shape=ID_ONLY,
        query_string=None,
        depth=SHALLOW,
        calendar_view=calendar_view,
        max_items=None,
        offset=0,
    )


def get_elements(account: Any, ids: list[Any], fields: list[Any] | None) -> Iterator[Any]:
    """GetItem with an IdOnly shape plus `fields`: one element (or exception object) per id, in order."""
    return _RawGetItem(account=account).call(items=ids, additional_fields=fields, shape=ID_ONLY)  # type: ignore[no-any-return]


def sync_page(account: Any, state: str | None, max_changes: int) -> tuple[str, int, bool]:
    """One IdOnly SyncFolderItems on the calendar from `state`: the new state, how many changes it reported, and
    whether they were the last (`IncludesLastItemInRange`)."""
    service = _SyncChanges(account=account)
    changes = 0
    for change in service.call(
        folder=account.calendar,
        shape=ID_ONLY,
        additional_fields=None,
        sync_state=state,
        ignore=None,
        max_changes_returned=max_changes,
        sync_scope=None,
    ):
        if isinstance(change, Exception):
            raise change
        changes += 1
    return str(service.sync_state), changes, bool(service.includes_last_item_in_range)


class SourceCredentials(Credentials):  # type: ignore[misc]
    """Credentials equal only to themselves.

    exchangelib shares one Protocol (connection pool, timeout, TLS adapter) per (endpoint, credentials) across the
    process; two sources with the same account but different TLS settings must not share one.
    """

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def forget_protocol(config: Any) -> None:
    """Drop the configuration's protocol from exchangelib's process-wide cache, which would keep it for ever."""
    with contextlib.suppress(KeyError):
        del Protocol[config]


def mount_on_sessions(protocol: Any, adapter_cls: type[requests.adapters.HTTPAdapter], timeout_s: float) -> bool:
    """Make this protocol object alone (not its class) time out after `timeout_s` and mount `adapter_cls` on each
    session it creates; False if it was done before."""
    if getattr(protocol, "_bridge_prepared", False):
        return False
    protocol.TIMEOUT = timeout_s
    create_session = protocol.create_session
    pool = protocol.CONNECTIONS_PER_SESSION

    def create_observed_session() -> Any:
        session = create_session()
        adapter = adapter_cls(pool_block=True, pool_connections=pool, pool_maxsize=pool, max_retries=0)
        # exchangelib mounts its adapter on the endpoint URL itself, and requests picks the longest prefix.
        session.mount(protocol.service_endpoint, adapter)
        return session

    # An instance attribute shadows the method for this protocol alone; BaseProtocol.HTTP_ADAPTER_CLS would
    # change every exchangelib client in the process.
    protocol.create_session = create_observed_session
    protocol._bridge_prepared = True
    return True


class ConnectionsExceeded(Exception):
    """Exchange refused a streaming connection: its budget's HangingConnectionLimit is used up."""


class StreamingEvents(GetStreamingEvents):  # type: ignore[misc]
    """GetStreamingEvents that reports each good frame (notifications or keep-alive): the connection is up."""

    def __init__(self, *, account: Any, on_frame: Callable[[], None]) -> None:
        super().__init__(account=account)
        self._on_frame = on_frame
        self._interrupted = threading.Event()

    def _get_response(self, payload: Any, api_version: Any) -> Any:
        response = super()._get_response(payload=payload, api_version=api_version)
        # An interrupt that came while the request was on its way found no response to shut: it is carried out
        # now, or the read would wait for the stream's end (up to its ConnectionTimeout) and stopping with it.
        if self._interrupted.is_set():
            self.interrupt()
        return response

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        try:
            found = super()._get_element_container(message=message, name=name)  # raises for an error frame
        except ErrorExceededConnectionCount as exc:
            # exchangelib answers this code by shrinking its pool and retrying at once until one session is left;
            # the other streams hold theirs, so it would retry for ever. Raised as another type, it ends the call.
            raise ConnectionsExceeded(str(exc)) from exc
        self._on_frame()
        return found

    def interrupt(self) -> None:
        """Shut the open response's socket for reading: the blocked read sees the end of the stream at once."""
        self._interrupted.set()
        response = self._streaming_response
        if response is not None:
            with contextlib.suppress(Exception):  # already ended or released: nothing to interrupt
                response.raw.shutdown()
