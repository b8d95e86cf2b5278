"""Exchange Online through Microsoft Graph: the `CalendarSource` for cloud mailboxes, and their `ChangeDetection`
(watching.py): webhook subscriptions, which the engine keeps and whose notifications `graph_wire` decodes.

Requests are built by msgraph-sdk's request builders and sent through its middleware (auth, retry on
429/503/504 honouring Retry-After, redirects); answers come back as raw HTTP responses (kiota's
`NativeResponseHandler`) and are decoded by `graph_wire`, never into kiota models (DESIGN §3.1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import msgspec
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from httpcore._utils import is_socket_readable
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware import (
    BaseMiddleware,
    ParametersNameDecodingHandler,
    RedirectHandler,
    RetryHandler,
    UserAgentHandler,
)
from kiota_http.middleware.options.response_handler_option import ResponseHandlerOption
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory, NationalClouds
from msgraph_core.middleware import GraphTelemetryHandler

from bridge.config import GraphSourceConfig
from bridge.domain import (
    Appointment,
    AppointmentDraft,
    AppointmentKind,
    AppointmentPatch,
    ConnectionReport,
    DeltaResult,
    DirectoryMember,
    MailMessage,
    Recurrence,
    Subscription,
    SubscriptionRequest,
    Window,
    WriteResult,
    iso_utc,
)
from bridge.sources import graph_wire as wire
from bridge.sources.base import (
    IGNORE_REQUESTS,
    AuthFailed,
    Conflict,
    ItemNotFound,
    MailboxNotFound,
    QuotaExceeded,
    RequestObserver,
    SourceError,
    SubscriptionExists,
    Throttled,
    Unavailable,
    Unreachable,
)
from bridge.sources.unreachable import why_unreachable
from bridge.sources.watching import ChangeWiring
from bridge.zones import iana_zone, local_date, wall_clock

log = logging.getLogger(__name__)

# Immutable ids survive moves between folders, so the ids the mirror stores stay valid (sent on every request,
# subscription creation included: notifications then carry immutable ids too).
_PREFER_IDS = 'IdType="ImmutableId"'
_PREFER_UTC = 'outlook.timezone="UTC"'
# Answers come back as the raw httpx response (the handler keeps no state, so one serves every request).
_NATIVE_RESPONSE = [ResponseHandlerOption(NativeResponseHandler())]
_AUTHORIZATION = "Authorization"
_MASTER_FIELDS = [
    "id",
    "type",
    "subject",
    "showAs",
    "sensitivity",
    "isAllDay",
    "isOrganizer",
    "isCancelled",
    "responseStatus",
    "changeKey",
    "transactionId",
    "lastModifiedDateTime",
    "start",
    "end",
]
# Codes Graph uses when the mailbox itself is missing or not reachable through REST, as opposed to an item.
_MAILBOX_CODES = {
    "ErrorInvalidUser",
    "MailboxNotEnabledForRESTAPI",
    "ResourceNotFound",
    "ErrorNonExistentMailbox",
}
# What Graph answers when a delta round must start over: 410 Gone with SyncStateNotFound (Outlook resources, also
# on a nextLink), 400 syncStateNotFound (directory resources), resyncRequired (Graph's error code list).
_SYNC_STATE_CODES = {"SyncStateNotFound", "syncStateNotFound", "SyncStateInvalid", "resyncRequired"}
_FULL_ROUND_ATTEMPTS = 3
# What a group's member list is read with: the attributes a workforce id may come from (domain.MEMBER_ATTRIBUTES),
# and Graph's largest page for directory objects (999; "Paging Microsoft Graph data").
_MEMBER_FIELDS = ["id", "mail", "userPrincipalName", "employeeId"]
_MEMBER_PAGE = 999
# Graph's JSON batching: at most 20 requests to a `POST /$batch`. Its items answered 429, 503 or 504 are asked
# again as the SDK's retry handler asks a whole request again (kiota's RetryHandler: those three statuses, 3
# retries, no wait over 180 s).
_BATCH_LIMIT = 20
_BATCH_RETRIED = frozenset({429, 503, 504})
_BATCH_RETRIES = 3
_BATCH_MAX_WAIT_S = 180.0


def graph_source(config: GraphSourceConfig, *, on_request: RequestObserver = IGNORE_REQUESTS) -> GraphSource:
    """The source for one configured tenant, with the credential its config names (secret or certificate)."""
    ca_file = str(config.ca_file) if config.ca_file else None
    # azure-identity verifies the authority's TLS with the system CAs unless told otherwise (the emulator's CA).
    pipeline: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    # Token requests go through azure-identity's own pipeline, not the Graph client's transport: each answer
    # (each retry's too, the hook sits below the retry policy) is told to `on_request` through azure-core's hook.
    pipeline["raw_response_hook"] = lambda response: on_request(str(response.http_response.status_code))
    credential: AsyncTokenCredential
    if config.client_secret is not None:
        credential = ClientSecretCredential(
            config.tenant_id, config.client_id, config.client_secret, authority=config.authority_host, **pipeline
        )
    else:
        credential = CertificateCredential(
            config.tenant_id,
            config.client_id,
            certificate_path=str(config.certificate_path),
            authority=config.authority_host,
            **pipeline,
        )
    return GraphSource(
        config.name,
        credential,
        graph_url=config.graph_url,
        authority=config.authority_host,
        ca_file=ca_file,
        max_concurrency=config.max_concurrency,
        on_request=on_request,
    )


def _middleware() -> list[BaseMiddleware]:
    """msgraph-sdk's default chain without the handlers that do nothing for the bridge.

    The default adds kiota's URL replacement (`/users/TokenToReplace` → `/me`, never in the bridge's URLs) and
    header and body inspection (off unless a request asks): each still opens a tracing span per request. Redirects,
    retries on 429/503/504 with Retry-After, `$` parameter names, the User-Agent and Graph's telemetry headers are
    kept, in the default's order.
    """
    return [
        RedirectHandler(),
        RetryHandler(),
        ParametersNameDecodingHandler(),
        UserAgentHandler(),
        _GraphTelemetry(),
    ]


_GRAPH_ENDPOINTS = frozenset(cloud.value for cloud in NationalClouds)


class _GraphTelemetry(GraphTelemetryHandler):  # type: ignore[misc]
    """Graph's telemetry handler, with its set of Graph endpoints built once instead of on every request."""

    def is_graph_url(self, url: httpx.URL) -> bool:
        return f"{url.scheme}://{url.netloc.decode()}" in _GRAPH_ENDPOINTS


class _Connection(httpcore.AsyncNetworkStream):
    """A connection of the pool, telling httpcore whether the server closed it straight from its socket.

    httpcore asks that of every idle connection in the pool on every request and every answer read; anyio's
    streams answer by building their table of attributes, a `getpeername` call included, for each question (two
    thirds of the pool's bookkeeping in bench/initial_sync.py). The socket is looked up once here; the check
    itself (a poll of the socket) is httpcore's own.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's signature)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's signature)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> httpcore.AsyncNetworkStream:
        return _Connection(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class _Network(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend (what httpx uses under asyncio), its connections made `_Connection`s."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Connection(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport, over a connection pool of the same settings on `_Network`.

    httpx takes no network backend (encode/httpx#3749 would add one), so its pool is replaced; a test checks that
    the connections are `_Connection`s, so an httpx that stops using `_pool` fails it instead of quietly costing
    the CPU again.
    """
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Network(),
    )
    return transport


class _ObservedTransport(httpx.AsyncBaseTransport):
    """The HTTP transport, telling `observe` the status of every answer (or that none came)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, observe: RequestObserver) -> None:
        self._inner = inner
        self._observe = observe

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self._observe("unreachable")
            raise
        self._observe(str(response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# azure-identity renews a cached token from 5 minutes before its expiry on (`DEFAULT_REFRESH_OFFSET`).
_REFRESH_MARGIN_S = 300


class _RenewingCredential(AsyncTokenCredential):
    """The app's credential, able to forget a token Graph refused.

    azure-identity keeps a token until it expires, so a token revoked early (a rotated secret, tokens revoked by
    an administrator) would be sent again and again. A token asked for with a claims challenge bypasses that
    cache and replaces what it holds; the challenge asked for, "issued after now" (`nbf`), is what Graph itself
    sends when it revokes a token (continuous access evaluation).
    """

    def __init__(self, inner: AsyncTokenCredential) -> None:
        self._inner = inner
        self._last: str | None = None
        self._renew_after: int | None = None
        # The last token and what it was asked for with (scopes, tenant, CAE).
        self._held: tuple[tuple[Any, ...], AccessToken] | None = None
        # One token request at a time: the requests refused together wait for the one new token.
        self._lock = asyncio.Lock()

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        # Kiota asks for the token on every request, and azure-identity answers each time by searching MSAL's
        # cache (a tenth of a request's CPU): a token good for longer than azure-identity's own refresh margin is
        # handed out from here; nearer its expiry, azure-identity decides again whether to renew it.
        asked = (scopes, tenant_id, enable_cae)
        held = self._held
        if (
            held is not None
            and claims is None
            and not kwargs
            and held[0] == asked
            and held[1].expires_on - time.time() > _REFRESH_MARGIN_S
        ):
            return held[1]
        async with self._lock:
            if claims is None and self._renew_after is not None:
                claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(self._renew_after)}}})
            # Refused by Entra, the renewal stays due: the refused token is not sent to Graph again meanwhile.
            token = await self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
            self._renew_after = None
            self._last = token.token
            self._held = (asked, token) if not kwargs else None
            return token

    def refused(self, token: str | None) -> None:
        """Graph answered 401 to `token`: the next request asks Entra for a new one (unless one came meanwhile)."""
        if token is not None and token == self._last:
            self._renew_after = int(time.time())
            self._last = None
            self._held = None

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> _RenewingCredential:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


class _DeltaTokenExpired(SourceError):
    """Graph no longer knows the round's sync state (410 Gone, SyncStateNotFound, resyncRequired), whether the
    delta token's or a nextLink's: the round starts over from nothing."""


class GraphSource:
    """Mailboxes of one Entra tenant, reached through one app registration.

    At most `max_concurrency` requests per mailbox are in flight (Graph allows 4 per app and mailbox and
    answers the fifth with 429 MailboxConcurrency).
    """

    def __init__(
        self,
        name: str,
        credential: AsyncTokenCredential,
        *,
        graph_url: str = "https://graph.microsoft.com/v1.0",
        authority: str = "https://login.microsoftonline.com",
        ca_file: str | None = None,
        max_concurrency: int = 4,
        page_size: int = 200,
        timeout_s: float = 30.0,
        master_cache_size: int = 4096,
        on_request: RequestObserver = IGNORE_REQUESTS,
    ) -> None:
        self.name = name
        self._credential = _RenewingCredential(credential)
        self._max_concurrency = max_concurrency
        self._page_size = page_size
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._masters: OrderedDict[tuple[str, str], tuple[wire.WireEvent, frozenset[str]]] = OrderedDict()
        self._master_cache_size = master_cache_size
        host = urlsplit(graph_url).hostname or ""
        auth = AzureIdentityAuthenticationProvider(self._credential, allowed_hosts=[host])
        # The scope kiota asks for with every request (derived from the host), so the connection test's token is
        # the one the requests use.
        self._scope = f"{urlsplit(graph_url).scheme}://{host}/.default"
        self._graph_url = graph_url
        self._authority = authority
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else httpx.create_ssl_context()
        # httpcore scans every pooled connection (a socket poll and getpeername each) on every request: a pool
        # much larger than the requests in flight costs more than it saves (bench/relay.py, docs/graph-source.md).
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        # Observed below the SDK's middleware, so each retry it makes on a 429 or 503 counts as a request.
        transport = _ObservedTransport(_transport(verify, limits), on_request)
        http = GraphClientFactory.create_with_custom_middleware(
            _middleware(), client=httpx.AsyncClient(transport=transport, timeout=timeout_s)
        )
        self._http = http
        self._adapter = GraphRequestAdapter(auth, http)
        self._adapter.base_url = graph_url.rstrip("/")
        self._graph_base = self._adapter.base_url
        # Requests of mailboxes waiting for the next `$batch` (`_queued`), and the task that sends them.
        self._queue: list[tuple[RequestInformation, str, asyncio.Future[_Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._client = GraphServiceClient(request_adapter=self._adapter)

    # -- reading -------------------------------------------------------------------------------------------

    async def read_delta(self, mailbox: str, window: Window, token: str | None) -> DeltaResult:
        if token is not None:
            try:
                return await self._delta_round(mailbox, self._delta(mailbox).with_url(token), full=False)
            except _DeltaTokenExpired as exc:
                log.info("delta of %s starts over: %s", mailbox, exc)
        config: RequestConfiguration[DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters]
        config = RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                start_date_time=iso_utc(window.start), end_date_time=iso_utc(window.end)
            )
        )
        # Graph may forget a round's sync state between two of its pages too (410 SyncStateNotFound on a nextLink,
        # microsoft-graph-docs-contrib#7790): the round starts over from nothing, a bounded number of times.
        attempt = 1
        while True:
            try:
                return await self._delta_round(mailbox, self._delta(mailbox), full=True, config=config)
            except _DeltaTokenExpired as exc:
                if attempt == _FULL_ROUND_ATTEMPTS:
                    raise SourceError(
                        f"delta of {mailbox}: Graph lost the round's sync state {attempt} times in a row ({exc})",
                        code=exc.code,
                        status=exc.status,
                    ) from exc
                attempt += 1
                log.info("delta of %s starts over (attempt %d): %s", mailbox, attempt, exc)

    async def read_item(self, mailbox: str, item_id: str) -> Appointment | None:
        params = EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            expand=[f"singleValueExtendedProperties($filter=id eq '{wire.BRIDGE_PROPERTY_ID}')"]
        )
        request = self._event(mailbox, item_id).to_get_request_information(
            RequestConfiguration(query_parameters=params)
        )
        try:
            body = await self._send(mailbox, request, f"reading event {item_id} of {mailbox}")
        except ItemNotFound:
            return None
        return wire.to_appointment(wire.decode_event(body))

    async def _delta_round(
        self,
        mailbox: str,
        builder: DeltaRequestBuilder,
        *,
        full: bool,
        config: RequestConfiguration[DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters] | None = None,
    ) -> DeltaResult:
        events: dict[str, wire.WireEvent] = {}
        removed: dict[str, None] = {}
        followed: set[str] = set()
        request = builder.to_get_request_information(config)
        _prefer(request, f"odata.maxpagesize={self._page_size}")
        while True:
            page = wire.decode_page(await self._send(mailbox, request, f"delta of {mailbox}", delta=True))
            for event in page.value:
                # Later pages win: an item updated and then removed within one round is removed.
                if event.removed is not None:
                    events.pop(event.id, None)
                    removed[event.id] = None
                elif event.type != AppointmentKind.SERIES_MASTER:
                    removed.pop(event.id, None)
                    events[event.id] = event
            if page.delta_link:
                break
            if not page.next_link:
                raise SourceError(f"delta of {mailbox}: a page had neither a nextLink nor a deltaLink")
            if page.next_link in followed:
                raise SourceError(f"delta of {mailbox}: Graph sent a nextLink it had sent before (a loop)")
            followed.add(page.next_link)
            request = self._delta(mailbox).with_url(page.next_link).to_get_request_information()
            _prefer(request, f"odata.maxpagesize={self._page_size}")
        appointments, withdrawn = await self._complete(mailbox, events.values())
        # A cancelled or declined meeting is still in the calendar, but no longer on the person's time.
        removed.update(dict.fromkeys(withdrawn))
        return DeltaResult(tuple(appointments), tuple(removed), page.delta_link, full)

    async def _complete(self, mailbox: str, events: Iterable[wire.WireEvent]) -> tuple[list[Appointment], list[str]]:
        """Turn events into appointments, filling occurrence stubs in from their series masters; also the ids of
        the instances that are withdrawn (`wire.withdrawn`).

        Graph sends occurrences as stubs (no subject, no showAs). Each master is fetched once per round and
        kept while the stubs that referred to it keep the same change keys: an unchanged series costs nothing.
        """
        listed = list(events)
        stub_keys: dict[str, set[str]] = {}
        for event in listed:
            if event.type == AppointmentKind.OCCURRENCE and event.show_as is None and event.series_master_id:
                stub_keys.setdefault(event.series_master_id, set()).add(wire.change_key_of(event))
        masters = dict(
            zip(
                stub_keys,
                await asyncio.gather(*(self._master(mailbox, mid, keys) for mid, keys in stub_keys.items())),
                strict=True,
            )
        )
        appointments = []
        withdrawn = []
        for event in listed:
            master = None
            if event.series_master_id in stub_keys and event.show_as is None:
                master = masters[event.series_master_id]
                if master is None:
                    continue  # the series went away meanwhile: the next round reports its occurrences removed
            if wire.withdrawn(event, master):
                withdrawn.append(event.id)
            else:
                appointments.append(wire.to_appointment(event, master))
        return appointments, withdrawn

    async def _master(self, mailbox: str, master_id: str, stub_keys: set[str]) -> wire.WireEvent | None:
        cached = self._masters.get((mailbox, master_id))
        if cached is not None and stub_keys <= cached[1]:
            self._masters.move_to_end((mailbox, master_id))
            return cached[0]
        params = EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(select=_MASTER_FIELDS)
        request = self._event(mailbox, master_id).to_get_request_information(
            RequestConfiguration(query_parameters=params)
        )
        try:
            master = wire.decode_event(await self._send(mailbox, request, f"reading series {master_id} of {mailbox}"))
        except ItemNotFound:
            self._masters.pop((mailbox, master_id), None)
            return None
        known = cached[1] if cached is not None and cached[0].change_key == master.change_key else frozenset()
        self._masters[(mailbox, master_id)] = (master, known | stub_keys)
        self._masters.move_to_end((mailbox, master_id))
        while len(self._masters) > self._master_cache_size:
            self._masters.popitem(last=False)
        return master

    # -- writing -------------------------------------------------------------------------------------------

    async def create(self, mailbox: str, draft: AppointmentDraft, transaction_id: str) -> WriteResult:
        payload: dict[str, Any] = {
            "subject": draft.subject,
            "body": {"contentType": "text", "content": draft.body},
            "start": _wire_time(draft.start, draft.time_zone),
            "end": _wire_time(draft.end, draft.time_zone),
            "showAs": draft.free_busy.value,
            "isAllDay": draft.all_day,
            "categories": list(draft.categories),
            "isReminderOn": False,
            # The SDK retries a POST after 429/503; Graph drops a second create with the same transactionId.
            "transactionId": transaction_id,
        }
        if draft.bridge_ref is not None:
            payload["singleValueExtendedProperties"] = [{"id": wire.BRIDGE_PROPERTY_ID, "value": draft.bridge_ref}]
        if draft.recurrence is not None:
            payload["recurrence"] = _recurrence(draft.recurrence, draft.start, draft.time_zone)
        request = _with_body(self._events(mailbox), Method.POST, payload)
        body = await self._send(mailbox, request, f"creating an event in {mailbox}")
        return _write_result(body)

    async def update(self, mailbox: str, item_id: str, patch: AppointmentPatch, change_key: str | None) -> WriteResult:
        payload: dict[str, Any] = {}
        if patch.subject is not None:
            payload["subject"] = patch.subject
        if patch.body is not None:
            payload["body"] = {"contentType": "text", "content": patch.body}
        if patch.start is not None:
            payload["start"] = _wire_time(patch.start, patch.time_zone)
        if patch.end is not None:
            payload["end"] = _wire_time(patch.end, patch.time_zone)
        if patch.free_busy is not None:
            payload["showAs"] = patch.free_busy.value
        if patch.all_day is not None:
            payload["isAllDay"] = patch.all_day
        if patch.categories is not None:
            payload["categories"] = list(patch.categories)
        request = _with_body(self._event(mailbox, item_id), Method.PATCH, payload)
        if change_key is not None:
            request.headers.try_add("If-Match", f'W/"{change_key}"')
        body = await self._send(mailbox, request, f"updating event {item_id} of {mailbox}")
        return _write_result(body)

    async def delete(self, mailbox: str, item_id: str, change_key: str | None = None) -> None:
        request = self._event(mailbox, item_id).to_delete_request_information()
        if change_key is not None:
            request.headers.try_add("If-Match", f'W/"{change_key}"')
        try:
            await self._send(mailbox, request, f"deleting event {item_id} of {mailbox}")
        except ItemNotFound:
            log.debug("event %s of %s was already gone", item_id, mailbox)

    async def read_time_zone(self, mailbox: str) -> str | None:
        """One mailbox's zone, with a request of its own (`read_time_zones` reads many, 20 to a request)."""
        # GET /users/{id}/mailboxSettings (application permission MailboxSettings.Read): `timeZone` is the zone
        # the user chose in Outlook, a Windows id or an IANA name (Graph docs: mailboxSettings resource).
        request = self._client.users.by_user_id(mailbox).mailbox_settings.to_get_request_information()
        what = f"reading the mailbox settings of {mailbox}"
        return _zone_of(mailbox, await self._send(mailbox, request, what, missing=MailboxNotFound), what)

    async def read_time_zones(self, mailboxes: Sequence[str]) -> Mapping[str, str | SourceError | None]:
        """`read_time_zone` for each mailbox, `_BATCH_LIMIT` at a time: made together, they travel in one
        `POST /$batch` (`_send`); a failure is that mailbox's."""
        found: dict[str, str | SourceError | None] = {}
        unique = list(dict.fromkeys(mailboxes))
        for first in range(0, len(unique), _BATCH_LIMIT):
            chunk = unique[first : first + _BATCH_LIMIT]
            answers = await asyncio.gather(*(self.read_time_zone(mailbox) for mailbox in chunk), return_exceptions=True)
            for mailbox, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, BaseException) and not isinstance(answer, SourceError):
                    raise answer
                found[mailbox] = answer
        return found

    async def find_bridge_items(self, mailbox: str) -> tuple[Appointment, ...]:
        # Graph filters extended properties only by an exact value, and every item's value differs: list the
        # calendar's singles and series masters (never occurrences) with the property expanded, page by page.
        params = EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            select=_MASTER_FIELDS,
            expand=[f"singleValueExtendedProperties($filter=id eq '{wire.BRIDGE_PROPERTY_ID}')"],
            top=self._page_size,
        )
        request = self._events(mailbox).to_get_request_information(RequestConfiguration(query_parameters=params))
        found: list[Appointment] = []
        followed: set[str] = set()
        while True:
            page = wire.decode_page(await self._send(mailbox, request, f"listing the events of {mailbox}"))
            found.extend(wire.to_appointment(event) for event in page.value if wire.bridge_ref_of(event))
            if not page.next_link or page.next_link in followed:
                return tuple(found)
            followed.add(page.next_link)
            request = self._events(mailbox).with_url(page.next_link).to_get_request_information()

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        def recipients(addresses: tuple[str, ...]) -> list[dict[str, dict[str, str]]]:
            return [{"emailAddress": {"address": address}} for address in addresses]

        payload = {
            "message": {
                "subject": message.subject,
                "body": {"contentType": "html" if message.html else "text", "content": message.body},
                "toRecipients": recipients(message.to),
                "ccRecipients": recipients(message.cc),
                "bccRecipients": recipients(message.bcc),
            },
            "saveToSentItems": True,
        }
        request = _with_body(self._client.users.by_user_id(sender).send_mail, Method.POST, payload)
        await self._send(sender, request, f"sending mail as {sender}")

    # -- change detection: Graph calls the bridge back (watching.py) ----------------------------------------

    def attach(self, wiring: ChangeWiring) -> None:
        wiring.keep_subscriptions(self)

    async def subscribe(self, request: SubscriptionRequest) -> Subscription:
        payload = {
            "changeType": "created,updated,deleted",
            "notificationUrl": request.notification_url,
            "lifecycleNotificationUrl": request.lifecycle_url,
            "resource": f"/users/{request.mailbox}/events",
            "expirationDateTime": iso_utc(request.expires_at),
            "clientState": request.client_state,
        }
        info = _with_body(self._client.subscriptions, Method.POST, payload)
        # Creating one, a 404 (ExtensionError "the requested user is invalid") means the mailbox is unknown.
        what = f"subscribing to {request.mailbox}"
        body = await self._send(request.mailbox, info, what, subscription=True, missing=MailboxNotFound)
        return wire.decode_subscription(body, request.mailbox)

    async def renew(self, subscription_id: str, mailbox: str, expires_at: datetime) -> Subscription:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        info = _with_body(builder, Method.PATCH, {"expirationDateTime": iso_utc(expires_at)})
        body = await self._send(mailbox, info, f"renewing subscription {subscription_id}", subscription=True)
        return wire.decode_subscription(body, mailbox)

    async def list_subscriptions(self) -> tuple[Subscription, ...]:
        found: list[Subscription] = []
        request = self._client.subscriptions.to_get_request_information()
        followed: set[str] = set()
        while True:
            body = await self._send(None, request, "listing subscriptions", subscription=True)
            page, next_link = wire.decode_subscription_page(body)
            found += page
            if not next_link or next_link in followed:
                return tuple(found)
            followed.add(next_link)
            request = self._client.subscriptions.with_url(next_link).to_get_request_information()

    async def unsubscribe(self, subscription_id: str) -> None:
        info = self._client.subscriptions.by_subscription_id(subscription_id).to_delete_request_information()
        try:
            await self._send(None, info, f"removing subscription {subscription_id}", subscription=True)
        except ItemNotFound:
            log.debug("subscription %s was already gone", subscription_id)

    # -- directory -----------------------------------------------------------------------------------------

    async def group_members(self, group_id: str) -> tuple[DirectoryMember, ...]:
        """`GET /groups/{id}/transitiveMembers`, every page: the users only (nested groups are listed beside their
        members, devices and contacts have no mailbox), each once, in the order Graph lists them."""
        builder = self._client.groups.by_group_id(group_id).transitive_members
        query = builder.TransitiveMembersRequestBuilderGetQueryParameters(select=_MEMBER_FIELDS, top=_MEMBER_PAGE)
        request = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        what = f"listing the members of group {group_id}"
        found: dict[str, DirectoryMember] = {}
        followed: set[str] = set()
        while True:
            try:
                page = wire.decode_member_page(await self._send(None, request, what))
            except ItemNotFound as exc:
                raise SourceError(f"{what}: no such group in the tenant (sources.{self.name}.group.id)") from exc
            except MailboxNotFound as exc:  # Graph's 403 on a directory route: a permission is missing
                raise SourceError(f"{exc}; the app needs GroupMember.Read.All and User.Read.All") from exc
            for item in page.value:
                if item.odata_type != wire.USER_TYPE:
                    continue
                if item.user_principal_name is None:
                    # Graph's "limited information": the app may list the group but not read its users.
                    raise SourceError(f"{what}: Graph hides the users' properties; the app needs User.Read.All")
                found.setdefault(item.id, wire.to_member(item))
            if not page.next_link:
                return tuple(found.values())
            if page.next_link in followed:
                raise SourceError(f"{what}: Graph sent a nextLink it had sent before (a loop)")
            followed.add(page.next_link)
            request = builder.with_url(page.next_link).to_get_request_information()

    # -- health --------------------------------------------------------------------------------------------

    async def test_connection(self, mailboxes: tuple[str, ...], *, sender: str | None = None) -> ConnectionReport:
        """A token, the application permissions it carries, then one small calendar read per mailbox (and the
        mail sender's), each failure named the way Entra ID or Exchange Online wants it fixed."""
        try:
            token = await self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            reason, setting = _entra_reason(exc)
            problem = f"Entra ID refused the app's credentials: {reason} (sources.{self.name}.{setting})"
            return ConnectionReport(self.name, (), (problem,))
        except ServiceRequestError as exc:
            unreachable = why_unreachable(exc, self._authority, f"sources.{self.name}.authority_host")
            return ConnectionReport(self.name, (), (), (unreachable,))
        passed, problems = _permissions(token.token, ["Calendars.ReadWrite", *(["Mail.Send"] if sender else [])])
        now = datetime.now(UTC)
        opened: set[str] = set()
        for mailbox in dict.fromkeys((*mailboxes, *filter(None, [sender]))):
            view = self._client.users.by_user_id(mailbox).calendar_view
            query = view.CalendarViewRequestBuilderGetQueryParameters(
                start_date_time=iso_utc(now), end_date_time=iso_utc(now + timedelta(days=1)), top=1, select=["id"]
            )
            request = view.to_get_request_information(RequestConfiguration(query_parameters=query))
            try:
                await self._send(mailbox, request, f"reading the calendar of {mailbox}")
            except (Unavailable, Throttled) as exc:
                setting = f"sources.{self.name}.graph_url"
                text = str(exc) if exc.status else why_unreachable(exc, self._graph_url, setting)
                return ConnectionReport(self.name, tuple(passed), tuple(problems), (text,), frozenset(opened))
            except AuthFailed as exc:
                problems.append(f"Graph refused the app's token: {exc}")
                break
            except SourceError as exc:
                problems.append(f"{mailbox}: {_mailbox_refusal(exc)}")
            else:
                passed.append(f"{mailbox}: calendar readable" + (" (mail sender)" if mailbox == sender else ""))
                opened.add(mailbox)
        return ConnectionReport(self.name, tuple(passed), tuple(problems), opened=frozenset(opened))

    async def close(self) -> None:
        await self._http.aclose()
        await self._credential.close()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _delta(self, mailbox: str) -> DeltaRequestBuilder:
        return self._client.users.by_user_id(mailbox).calendar_view.delta

    def _events(self, mailbox: str) -> Any:
        return self._client.users.by_user_id(mailbox).events

    def _event(self, mailbox: str, item_id: str) -> EventItemRequestBuilder:
        return self._client.users.by_user_id(mailbox).events.by_event_id(item_id)

    @asynccontextmanager
    async def _slot(self, mailbox: str | None) -> AsyncIterator[None]:
        if mailbox is None:
            yield
            return
        slot = self._slots.get(mailbox.lower())
        if slot is None:
            slot = self._slots[mailbox.lower()] = asyncio.Semaphore(self._max_concurrency)
        async with slot:
            yield

    async def _send(
        self,
        mailbox: str | None,
        request: RequestInformation,
        what: str,
        *,
        delta: bool = False,
        subscription: bool = False,
        missing: type[SourceError] | None = None,
    ) -> bytes:
        """Send and return the body; a failure becomes a `SourceError`. A mailbox's requests are coalesced with
        the others made meanwhile into one `POST /$batch` (`_queued`); the rest go alone through the pipeline."""
        _prefer(request, _PREFER_IDS, _PREFER_UTC)
        self._prepare(request)
        async with self._slot(mailbox):
            answer = await (self._direct(request, what) if mailbox is None else self._queued(request, what))
            # Graph throttles each request of a batch on its own (its own 429 or 503 and Retry-After): asked again
            # as the SDK's retry handler asks a lone request again (as many times, no longer a wait), keeping the
            # slot.
            retries = 0
            while answer.batched and answer.status in _BATCH_RETRIED and retries < _BATCH_RETRIES:
                wait = _retry_after(answer.retry_after)
                if wait > _BATCH_MAX_WAIT_S:
                    break
                await asyncio.sleep(wait)
                retries += 1
                answer = await self._queued(request, what)
        if answer.status < 400:
            return answer.body
        raise _error(
            answer.status,
            answer.body,
            answer.retry_after,
            what,
            delta=delta,
            subscription=subscription,
            missing=missing,
        )

    def _prepare(self, request: RequestInformation) -> None:
        """Ask for the raw response, and fix the URL: kiota expands the URL template every time it reads `url`
        (three times a request, std-uritemplate in pure Python), so it is expanded once, here, and kept."""
        request.add_request_options(_NATIVE_RESPONSE)
        self._adapter.set_base_url_for_request_information(request)
        request.url = request.url

    async def _direct(self, request: RequestInformation, what: str) -> _Answer:
        """One request through the SDK's pipeline (its retries included)."""
        response = await self._exchange(request, what)
        if response.status_code == 401:
            # A token Graph no longer accepts (revoked, its secret rotated): drop it and ask Entra for a new
            # one, once. Refused again, or the new token refused by Entra, it is AuthFailed.
            self._credential.refused(_bearer(request))
            request.headers.remove(_AUTHORIZATION)
            response = await self._exchange(request, what)
        return _Answer(response.status_code, response.content, response.headers.get("Retry-After"))

    def _queued(self, request: RequestInformation, what: str) -> asyncio.Future[_Answer]:
        """The request's answer, once it went out with the others queued in the same turn of the event loop (20
        to a `$batch`; alone, as is). Its mailbox's slot is the caller's: Graph counts a batch's request against
        its mailbox's 4 like one of its own, so a batch never carries more than the slots held."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Answer] = loop.create_future()
        self._queue.append((request, what, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        # One turn of the loop: requests made ready together (many syncs or subscriptions started at once)
        # join; a lone request waits no longer than that.
        await asyncio.sleep(0)
        queued, self._queue, self._flusher = self._queue, [], None
        chunks = [queued[first : first + _BATCH_LIMIT] for first in range(0, len(queued), _BATCH_LIMIT)]
        await asyncio.gather(*(self._deliver(chunk) for chunk in chunks))

    async def _deliver(self, chunk: list[tuple[RequestInformation, str, asyncio.Future[_Answer]]]) -> None:
        """Send `chunk` and hand each caller its answer; whatever stopped it (a bug, the source closed), no caller
        is left waiting."""
        try:
            batchable: list[tuple[tuple[RequestInformation, str, asyncio.Future[_Answer]], dict[str, Any]]] = []
            alone = []
            for queued in chunk:
                item = _batch_item(queued[0], self._graph_base)
                if item is None:
                    alone.append(queued)
                else:
                    batchable.append((queued, item))
            if len(batchable) == 1:
                alone.append(batchable.pop()[0])
            await asyncio.gather(
                *(self._deliver_direct(request, what, future) for request, what, future in alone),
                *([self._deliver_batch(batchable)] if batchable else []),
            )
        finally:
            for _, what, future in chunk:
                _settle(future, exception=SourceError(f"{what}: the request was never answered"))

    async def _deliver_batch(
        self, batch: list[tuple[tuple[RequestInformation, str, asyncio.Future[_Answer]], dict[str, Any]]]
    ) -> None:
        payload = {"requests": [{"id": str(n), **item} for n, (_, item) in enumerate(batch)]}
        request = RequestInformation(Method.POST, "{+baseurl}/$batch", {})
        request.headers.try_add("Accept", "application/json")
        request.set_stream_content(wire.encode(payload), "application/json")
        self._prepare(request)
        try:
            outer = await self._direct(request, f"{len(batch)} requests ($batch)")
            if outer.status >= 400:
                # The batch itself failed (after the SDK's retries): each request failed so.
                answers = {str(n): outer for n in range(len(batch))}
            else:
                answers = {
                    answer.id: _Answer(answer.status, bytes(answer.body), answer.header("Retry-After"), batched=True)
                    for answer in wire.decode_batch(outer.body)
                }
        except (SourceError, wire.WireDecodeError) as exc:
            for (_, what, future), _ in batch:
                _settle(future, exception=SourceError(f"{what}: {exc}"))
            return
        for n, ((_, what, future), _) in enumerate(batch):
            answer = answers.get(str(n))
            if answer is None:
                _settle(future, exception=SourceError(f"{what}: Graph's $batch response has no answer for it"))
            else:
                _settle(future, answer)

    async def _deliver_direct(self, request: RequestInformation, what: str, future: asyncio.Future[_Answer]) -> None:
        try:
            _settle(future, await self._direct(request, what))
        except SourceError as exc:
            _settle(future, exception=exc)

    async def _exchange(self, request: RequestInformation, what: str) -> httpx.Response:
        try:
            response: httpx.Response = await self._adapter.send_primitive_async(request, "bytes", None)
        except ClientAuthenticationError as exc:
            raise AuthFailed(f"{what}: the token request was refused: {exc.message}") from exc
        except (httpx.TransportError, ServiceRequestError) as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
        return response


def _error(
    status: int,
    body: bytes,
    retry_after: str | None,
    what: str,
    *,
    delta: bool = False,
    subscription: bool = False,
    missing: type[SourceError] | None = None,
) -> SourceError:
    """The `SourceError` for a failed answer (a whole response's, or one of a `$batch`'s) with its Retry-After."""
    detail = wire.decode_error(body)
    message = f"{what}: Graph answered {status} {detail.code or ''}: {detail.message}".rstrip(": ")
    if delta and (status == 410 or detail.code in _SYNC_STATE_CODES):
        return _DeltaTokenExpired(message, code=detail.code, status=status)
    if status == 401:
        return AuthFailed(message, code=detail.code, status=status)
    kind: type[SourceError]
    if status == 403:
        kind = QuotaExceeded if subscription else MailboxNotFound
        return kind(message, code=detail.code, status=status)
    if detail.code == "ErrorInvalidIdMalformed":
        # An id that cannot be any item's (Graph answers 400): for the caller it names nothing, like a 404.
        return ItemNotFound(message, code=detail.code, status=status)
    if status == 404 and missing is not None:
        return missing(message, code=detail.code, status=status)
    if status == 404:
        kind = MailboxNotFound if detail.code in _MAILBOX_CODES and not subscription else ItemNotFound
        return kind(message, code=detail.code, status=status)
    if status == 409 and subscription:
        return SubscriptionExists(message, code=detail.code, status=status)
    if status == 412 or detail.code == "ErrorIrresolvableConflict":
        return Conflict(message, code=detail.code, status=status)
    if status == 429:
        return Throttled(message, retry_after=_retry_after(retry_after), code=detail.code)
    if status >= 500:
        return Unavailable(message, code=detail.code, status=status)
    return SourceError(message, code=detail.code, status=status)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A request's answer: a response's, or one of a `$batch`'s (`batched`: not retried by the SDK)."""

    status: int
    body: bytes
    retry_after: str | None
    batched: bool = False


# Kiota's URL templates percent-encode the `$` of system query options; its ParametersNameDecodingHandler
# decodes them before a request leaves, which a batch's inner URLs never pass through.
_ENCODED_OPTION = re.compile(r"([?&])%24")
# Sent with the batch itself (the token, the telemetry) or meaningless inside it.
_OUTER_HEADERS = frozenset({"authorization", "accept", "host", "content-length"})


def _batch_item(request: RequestInformation, base: str) -> dict[str, Any] | None:
    """`request` as an item of a `$batch` (no id yet), or None when its URL is not under `base` (the version's
    URL): inner URLs are relative to the version (Graph's JSON batching page), nextLinks and deltaLinks included."""
    url = request.url
    if not url.startswith(base + "/"):
        return None
    item: dict[str, Any] = {"method": request.http_method.value, "url": _ENCODED_OPTION.sub(r"\1$", url[len(base) :])}
    headers = {
        name: ", ".join(sorted(values))
        for name, values in request.headers.get_all().items()
        if name.lower() not in _OUTER_HEADERS
    }
    if headers:
        item["headers"] = headers
    if request.content:
        item["body"] = msgspec.Raw(request.content)
    return item


def _settle(
    future: asyncio.Future[_Answer], answer: _Answer | None = None, *, exception: BaseException | None = None
) -> None:
    """Hand a caller its answer, unless it stopped waiting (cancelled)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        assert answer is not None
        future.set_result(answer)


def _zone_of(mailbox: str, body: bytes, what: str) -> str | None:
    """The IANA zone of a mailboxSettings answer; None when the user set none, or one the bridge does not know."""
    try:
        name = wire.decode_time_zone(body)
    except wire.WireDecodeError as exc:
        raise SourceError(f"{what}: {exc}") from exc
    if name is None:
        return None
    zone = iana_zone(name)
    if zone is None:
        log.warning("mailbox %s has a time zone the bridge does not know: %r", mailbox, name)
    return zone


def _bearer(request: RequestInformation) -> str | None:
    """The token a request was sent with."""
    for value in request.headers.get(_AUTHORIZATION):
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer":
            return str(token)
    return None


# Entra's errors for a wrong tenant, an unknown application and a wrong secret or certificate, by AADSTS number
# (Microsoft's "Microsoft Entra authentication and authorization error codes").
_ENTRA_SETTINGS = {
    "90002": "tenant_id",
    "700016": "client_id",
    "7000215": "client_secret",
    "700027": "certificate_path",
}


def _permissions(token: str, needed: list[str]) -> tuple[list[str], list[str]]:
    """What the token's application permissions pass and what they lack, of `needed`."""
    roles = wire.token_roles(token)
    if roles is None:
        return ["token issued (its permissions cannot be read from it: the calendar reads below tell)"], []
    missing = [role for role in needed if role not in roles]
    if not missing:
        return [f"token issued; application permissions {', '.join(needed)} granted"], []
    granted = ", ".join(sorted(roles)) or "none"
    lacking = (
        f"the app lacks the application permission {', '.join(missing)} (granted: {granted}); add it in Entra ID"
        " (API permissions, Microsoft Graph, application permissions) and grant admin consent"
    )
    return [], [lacking]


def _entra_reason(exc: ClientAuthenticationError) -> tuple[str, str]:
    """Entra's AADSTS sentences from a refused token request (without the JSON, trace ids and timestamps around
    them), and the setting they point at."""
    text = exc.message or str(exc)
    found = re.search(r"AADSTS(\d+): (.*?)(?: Trace ID:|'$|$)", text, re.DOTALL)
    if found is None:
        return text.splitlines()[0], "client_secret"
    return f"AADSTS{found[1]}: {found[2].strip()}", _ENTRA_SETTINGS.get(found[1], "client_secret")


def _mailbox_refusal(exc: SourceError) -> str:
    """Why Exchange Online would not let the app read a mailbox, and where that is fixed."""
    if exc.status == 403 and ("AccessPolicy" in str(exc) or "[RAOP]" in str(exc)):
        return (
            "an application access policy keeps the app out of this mailbox (Exchange Online PowerShell:"
            " Test-ApplicationAccessPolicy; add the mailbox to the policy's group)"
        )
    if exc.status == 403:
        return f"access denied ({exc.code or 403}): the app lacks Calendars.ReadWrite for it"
    if exc.code == "MailboxNotEnabledForRESTAPI":
        return "has no Exchange Online mailbox (on-premises, inactive or soft-deleted: an ews source reaches it)"
    if exc.status == 404:
        return f"no such mailbox in the tenant ({exc.code or 404})"
    return str(exc)


def _retry_after(value: str | None) -> float:
    try:
        return max(1.0, float(value or "10"))
    except ValueError:
        return 10.0


def _prefer(request: RequestInformation, *preferences: str) -> None:
    # Several preferences travel in one Prefer header, comma-separated (RFC 7240).
    request.headers.add("Prefer", list(preferences))


def _with_body(builder: Any, method: Method, payload: Any) -> RequestInformation:
    """A request for `builder`'s URL with a JSON body the bridge encodes itself (no kiota model)."""
    request = RequestInformation(method, builder.url_template, dict(builder.path_parameters))
    request.headers.try_add("Accept", "application/json")
    request.set_stream_content(wire.encode(payload), "application/json")
    return request


def _write_result(body: bytes) -> WriteResult:
    event = wire.decode_event(body)
    return WriteResult(event.id, wire.change_key_of(event))


def _recurrence(recurrence: Recurrence, start: datetime, zone: str) -> dict[str, Any]:
    pattern: dict[str, Any] = {"type": recurrence.pattern.value, "interval": recurrence.interval}
    if recurrence.days_of_week:
        pattern["daysOfWeek"] = [day.value for day in recurrence.days_of_week]
    return {
        "pattern": pattern,
        "range": {
            "type": "endDate",
            "startDate": local_date(start, zone).isoformat(),
            "endDate": recurrence.until.isoformat(),
            # The series repeats at the same wall-clock time in this zone, across DST changes.
            "recurrenceTimeZone": zone,
        },
    }


def _wire_time(value: datetime, zone: str) -> dict[str, str]:
    """Graph's dateTimeTimeZone: wall-clock time in `zone`, which Exchange keeps with the event (an all-day
    event's start and end must be midnight there). Graph takes IANA names as well as Windows ids."""
    return {"dateTime": wall_clock(value, zone).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone}
