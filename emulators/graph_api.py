"""Graph v1.0 request handling, independent of the HTTP server so `$batch` items go through the same path.

A `Call` is one request (an HTTP request, or one item of a `$batch`); `GraphApi.serve` authenticates it,
routes it, applies the mailbox limits and injected faults, runs the handler, records it in the stats and returns
a `Reply`. Graph's own rules implemented here: default page sizes (10 for `/events` and `/calendarView`, 100
for delta, `Prefer: odata.maxpagesize` up to 1000 answered with `Preference-Applied`), `Prefer:
outlook.timezone` on reads, `If-Match` on writes, and `$batch` (20 items at most, each url relative to the
version, `dependsOn`, 424 for items whose dependency failed; items without `dependsOn` run in parallel, each with
the simulated latency, so a batch takes as long as its slowest item).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from multidict import CIMultiDict

from emulators.graph_common import GraphError, bad_request, error_body, known_zone, new_guid, parse_instant
from emulators.graph_delta import Page
from emulators.graph_events import Instance, Mailbox
from emulators.graph_faults import Faults, MailboxLimits, Stats
from emulators.graph_groups import (
    GROUP_TYPE,
    READ_USERS,
    USER_TYPE,
    page_size,
    render_member,
    skip_offset,
    skip_token,
)
from emulators.graph_model import AppRegistration, DirectoryUser, GraphState
from emulators.graph_notify import Notifier
from emulators.graph_render import render, render_removed, render_stub, select

log = logging.getLogger(__name__)

DEFAULT_PAGE = 10
DEFAULT_DELTA_PAGE = 100
MAX_PAGE = 1000
MAX_BATCH = 20
_PREFER_PART = re.compile(r'\s*([^=,\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')
_KEY_SEGMENT = re.compile(r"^(users|subscriptions)\('(.+)'\)$", re.IGNORECASE)


@dataclass
class Call:
    """One Graph request: path segments after /v1.0 (decoded), query, headers, parsed JSON body."""

    method: str
    segments: list[str]
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any
    base_url: str
    path: str
    batch_item: bool = False

    @classmethod
    def parse(
        cls,
        method: str,
        raw_path: str,
        headers: Mapping[str, str] | CIMultiDict[str],
        body: Any,
        base_url: str,
        *,
        batch_item: bool = False,
    ) -> Call:
        """`raw_path` still percent-encoded and relative to /v1.0 (`users/x/events?$top=5`)."""
        path, _, query_string = raw_path.partition("?")
        segments: list[str] = []
        for segment in path.strip("/").split("/"):
            if not segment:
                continue
            decoded = unquote(segment)
            keyed = _KEY_SEGMENT.match(decoded)
            segments.extend([keyed[1], keyed[2]] if keyed else [decoded])
        query: dict[str, str] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            query.setdefault(key, value)
        return cls(
            method=method.upper(),
            segments=segments,
            query=query,
            headers=CIMultiDict(headers),
            body=body,
            base_url=base_url.rstrip("/"),
            path="/v1.0/" + raw_path.lstrip("/"),
            batch_item=batch_item,
        )

    def option(self, name: str) -> str | None:
        """A query option, case-insensitively; system options with or without their `$` (v1.0 takes both)."""
        wanted = {name.lower(), f"${name.lower()}"}
        for key, value in self.query.items():
            if key.lower() in wanted:
                return value
        return None

    def preferences(self) -> list[str]:
        parts: list[str] = []
        for header in self.headers.getall("Prefer", []):
            for match in _PREFER_PART.finditer(header):
                if match[1]:
                    parts.append(match[1] + (f"={match[2].strip()}" if match[2] else ""))
        return parts

    def prefer(self, name: str) -> str | None:
        for part in self.preferences():
            key, _, value = part.partition("=")
            if key.lower() == name.lower():
                return value.strip().strip('"')
        return None


@dataclass
class _Seen:
    """What routing learnt about a call, kept for the stats even when the call then fails."""

    route: str | None = None
    user: str | None = None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Call", "Target"], Awaitable[Reply]]


@dataclass
class Target:
    """What the route named: the app calling, and the user / mailbox / item in the path."""

    app: AppRegistration
    user_key: str | None = None
    user: DirectoryUser | None = None
    mailbox: Mailbox | None = None
    item_id: str | None = None

    def the_mailbox(self) -> Mailbox:
        assert self.mailbox is not None
        return self.mailbox


class GraphApi:
    def __init__(self, state: GraphState, faults: Faults, stats: Stats, notifier: Notifier) -> None:
        self.state = state
        self.faults = faults
        self.stats = stats
        self.notifier = notifier
        self.limits = MailboxLimits(faults)
        self._handlers: dict[str, dict[str, Handler]] = {
            "batch": {"POST": self._batch},
            "subscriptions": {"GET": self._list_subscriptions, "POST": self._create_subscription},
            "subscription": {
                "GET": self._get_subscription,
                "PATCH": self._renew_subscription,
                "DELETE": self._delete_subscription,
            },
            "user": {"GET": self._get_user},
            "events": {"GET": self._list_events, "POST": self._create_event},
            "event": {"GET": self._get_event, "PATCH": self._update_event, "DELETE": self._delete_event},
            "instances": {"GET": self._instances},
            "calendarView": {"GET": self._calendar_view},
            "delta": {"GET": self._delta},
            "sendMail": {"POST": self._send_mail},
            "transitiveMembers": {"GET": self._transitive_members},
            "mailboxSettings": {"GET": self._mailbox_settings, "PATCH": self._update_mailbox_settings},
        }

    async def serve(self, call: Call, *, app: AppRegistration | None = None) -> Reply:
        """Answer one call; errors become Graph's error replies. `app` is given for `$batch` items."""
        started = time.monotonic()
        seen = _Seen()
        try:
            reply = await self._serve(call, app, seen)
        except GraphError as error:
            retry_after = error.headers.get("Retry-After")
            if seen.user is not None and retry_after is not None:
                self.stats.told_to_wait(seen.user, float(retry_after))
            reply = self.error_reply(error, call)
        except Exception:
            log.exception("the Graph emulator failed on %s %s", call.method, call.path)
            reply = self.error_reply(GraphError(500, "generalException", "General exception while processing."), call)
        self.stats.request(
            method=call.method,
            path=unquote(call.path),
            status=reply.status,
            route=seen.route or _route_kind(call.segments),
            user=seen.user,
            started=started,
            prefer=call.preferences(),
            batch_item=call.batch_item,
        )
        return reply

    def error_reply(self, error: GraphError, call: Call) -> Reply:
        request_id = new_guid()
        client_request_id = call.headers.get("client-request-id", request_id)
        headers = {"request-id": request_id, "client-request-id": client_request_id, **error.headers}
        return Reply(error.status, error_body(error.code, error.message, request_id, client_request_id), headers)

    async def _serve(self, call: Call, app: AppRegistration | None, seen: _Seen) -> Reply:
        # A batch takes as long as its slowest item: the latency is each item's (they run in parallel), not the
        # batch's on top of theirs.
        delay = 0.0 if _route_kind(call.segments) == "batch" else self.faults.latency_ms / 1000
        try:
            app = app or self.state.authenticate(call.headers.get("Authorization"))
            seen.route, target, handler = self._route(call, app)
            self.state.authorize(app, seen.route, call.method, target.user)
            self.limits.check_app_rate(app.client_id)
        except GraphError:
            await _sleep(delay)
            raise
        if target.user is None:
            await _sleep(delay)
            self._fault(seen.route, None)
            return await handler(call, target)
        seen.user = target.user.user_principal_name
        self.stats.arrived(seen.user)
        key = (app.client_id, target.user.id)
        count = self.limits.enter(key)
        self.stats.concurrency(seen.user, count)
        if count > self.faults.concurrency_limit:
            # Refused at once: a rejected request does not hold a slot while its answer is delayed.
            self.limits.leave(key)
            await _sleep(delay)
            raise self.limits.concurrency_error()
        try:
            await _sleep(delay)
            self._fault(seen.route, target.user.id)
            self.limits.check_rate(key)
            if self.faults.take_malformed(target.user.id):
                return Reply(200, {"@odata.context": "garbled", "value": "not a list of events"})
            return await handler(call, target)
        finally:
            self.limits.leave(key)

    def _fault(self, route: str, user_id: str | None) -> None:
        error = self.faults.take(route, user_id)
        if error is not None:
            raise error

    # -- routing -------------------------------------------------------------------------------------------

    def _route(self, call: Call, app: AppRegistration) -> tuple[str, Target, Handler]:
        segments = call.segments
        kind = _route_kind(segments)
        handlers = self._handlers.get(kind or "")
        if kind is None or handlers is None:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{_last(segments)}'.")
        handler = handlers.get(call.method)
        if handler is None:
            raise GraphError(405, "Request_BadRequest", f"The HTTP method '{call.method}' is not allowed here.")
        target = Target(app)
        if kind == "subscription":
            target.item_id = segments[1]
        elif kind == "event":
            target.item_id = segments[-1]
        elif kind in ("instances", "transitiveMembers"):
            target.item_id = segments[-2] if kind == "instances" else segments[1]
        if segments[0].lower() == "users":
            target.user_key = segments[1]
            if kind == "user":
                target.user = self.state.user_for(target.user_key, app)
            else:
                target.mailbox = self.state.mailbox_for(target.user_key, app)
                target.user = self.state.users[target.mailbox.owner.id]
        return kind, target, handler

    # -- users and events ----------------------------------------------------------------------------------

    async def _get_user(self, call: Call, target: Target) -> Reply:
        assert target.user is not None
        return Reply(200, {"@odata.context": f"{call.base_url}/v1.0/$metadata#users/$entity", **target.user.to_graph()})

    async def _list_events(self, call: Call, target: Target) -> Reply:
        mailbox = target.the_mailbox()
        events = sorted(mailbox.events.values(), key=lambda event: (event.created, event.id))
        instances = [mailbox.get(event.id) for event in events]
        return self._paged(call, target, instances, context="events")

    async def _transitive_members(self, call: Call, target: Target) -> Reply:
        """A page of the group's flat member list (graph_groups.py says what Graph does and where it says so)."""
        assert target.item_id is not None
        groups = self.state.groups
        group = groups.find(target.item_id, target.app.tenant_id)
        size = page_size(call.option("top"))
        size = min(size, self.faults.directory_page or size)
        token = call.option("skiptoken")
        offset = skip_offset(token) if token else 0
        fields = [name for name in (call.option("select") or "").split(",") if name]
        readable = bool(READ_USERS & target.app.roles)
        value = []
        for object_id in (found := groups.transitive(group.id))[offset : offset + size]:
            user = self.state.users.get(object_id)
            if user is not None:
                value.append(render_member(user.to_graph(), USER_TYPE, fields, readable=readable))
            elif object_id in groups.groups:
                value.append(render_member(groups.groups[object_id].to_graph(), GROUP_TYPE, fields, readable=True))
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#directoryObjects", "value": value}
        if offset + size < len(found):
            query = {key: value for key, value in call.query.items() if key.lower().lstrip("$") != "skiptoken"}
            query["$skiptoken"] = skip_token(offset + size)
            path = call.path.partition("?")[0]
            body["@odata.nextLink"] = f"{call.base_url}{path}?{urlencode(query, safe=_QUERY_SAFE, quote_via=quote)}"
        return Reply(200, body)

    async def _create_event(self, call: Call, target: Target) -> Reply:
        event, _ = target.the_mailbox().create(call.body)
        return Reply(201, self._entity(call, target, target.the_mailbox().get(event.id)), _applied(call))

    async def _get_event(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        return Reply(200, self._entity(call, target, target.the_mailbox().get(target.item_id)), _applied(call))

    async def _update_event(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        instance = target.the_mailbox().update(target.item_id, call.body, if_match=call.headers.get("If-Match"))
        return Reply(200, self._entity(call, target, instance), _applied(call))

    async def _delete_event(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        target.the_mailbox().delete(target.item_id, if_match=call.headers.get("If-Match"))
        return Reply(204)

    async def _instances(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        mailbox = target.the_mailbox()
        master = mailbox.get(target.item_id)
        low, high = _window(call)
        if master.type != "seriesMaster":
            found = [master] if master.overlaps(low, high) else []
        else:
            found = sorted(
                mailbox.series_instances(master.event, low, high), key=lambda item: (item.start_utc, item.id)
            )
        return self._paged(call, target, found, context="instances")

    async def _calendar_view(self, call: Call, target: Target) -> Reply:
        low, high = _window(call)
        return self._paged(call, target, target.the_mailbox().instances(low, high), context="calendarView")

    async def _send_mail(self, call: Call, target: Target) -> Reply:
        self.state.record_mail(target.the_mailbox(), call.body)
        return Reply(202)

    async def _mailbox_settings(self, call: Call, target: Target) -> Reply:
        mailbox = target.the_mailbox()
        context = f"{call.base_url}/v1.0/$metadata#users('{quote(target.user_key or '', safe='@')}')/mailboxSettings"
        # The shape of Graph's answer (mailboxSettings resource): the zone the user chose, as they chose it.
        settings = {
            "timeZone": mailbox.time_zone,
            "dateFormat": "dd.MM.yyyy",
            "timeFormat": "HH:mm",
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {"timeZone": {"name": mailbox.time_zone}},
            "userPurpose": "user",
        }
        fields = call.option("select")
        if fields:
            settings = {name: value for name, value in settings.items() if name in fields.split(",")}
        return Reply(200, {"@odata.context": context, **settings})

    async def _update_mailbox_settings(self, call: Call, target: Target) -> Reply:
        body = call.body if isinstance(call.body, dict) else {}
        zone_name = body.get("timeZone")
        if zone_name is not None:
            if not isinstance(zone_name, str) or not known_zone(zone_name):
                raise bad_request(f"The specified time zone '{zone_name}' is invalid.", code="ErrorInvalidTimeZone")
            target.the_mailbox().time_zone = zone_name
        return await self._mailbox_settings(call, target)

    def _entity(self, call: Call, target: Target, instance: Instance) -> dict[str, Any]:
        zone_name = _zone(call)
        rendered = render(instance, zone_name=zone_name, expand=call.option("expand"))
        fields = call.option("select")
        if fields:
            rendered = select(rendered, fields.split(","))
        context = f"{call.base_url}/v1.0/$metadata#users('{quote(target.user_key or '', safe='@')}')/events/$entity"
        return {"@odata.context": context, **rendered}

    def _paged(self, call: Call, target: Target, instances: list[Instance], *, context: str) -> Reply:
        size = _page_size(call, DEFAULT_PAGE)
        skip = _int_option(call.option("skip"), 0)
        zone_name = _zone(call)
        fields = call.option("select")
        expand = call.option("expand")
        value = []
        for instance in instances[skip : skip + size]:
            rendered = render(instance, zone_name=zone_name, expand=expand)
            value.append(select(rendered, fields.split(",")) if fields else rendered)
        body: dict[str, Any] = {
            "@odata.context": f"{call.base_url}/v1.0/$metadata#users('{quote(target.user_key or '', safe='@')}')/"
            f"{context}",
            "value": value,
        }
        if skip + size < len(instances):
            query = {key: value for key, value in call.query.items() if key not in ("$skip", "skip")}
            query["$skip"] = str(skip + size)
            path = call.path.partition("?")[0]
            body["@odata.nextLink"] = f"{call.base_url}{path}?{urlencode(query, safe=_QUERY_SAFE, quote_via=quote)}"
        return Reply(200, body, _applied(call, size))

    # -- delta ---------------------------------------------------------------------------------------------

    async def _delta(self, call: Call, target: Target) -> Reply:
        mailbox = target.the_mailbox()
        delta = self.state.delta
        skip_token = call.option("skiptoken")
        delta_token = call.option("deltatoken")
        if skip_token:
            round_id, offset = delta.resolve_skip(skip_token)
        elif delta_token:
            round_id, offset = delta.next_round(mailbox, delta_token), 0
        else:
            low, high = _window(call)
            round_id, offset = delta.first_round(mailbox, low, high), 0
        size = _page_size(call, DEFAULT_DELTA_PAGE)
        if self.faults.take_empty_delta_page(mailbox.owner.id):
            page = Page((), delta.skip_token(round_id, offset), None)
        else:
            page = delta.page(round_id, offset, size)
        expiry = self.faults.take_delta_expiry(mailbox.owner.id)
        if expiry is not None:
            # This page is still answered; its nextLink (or deltaLink) is what no longer works.
            delta.expire(mailbox.owner.id, expiry)
        zone_name = _zone(call)
        link_base = f"{call.base_url}/v1.0/users/{quote(target.user_key or '', safe='@')}/calendarView/delta"
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#Collection(event)"}
        if page.skip_token is not None:
            body["@odata.nextLink"] = f"{link_base}?$skiptoken={page.skip_token}"
        else:
            body["@odata.deltaLink"] = f"{link_base}?$deltatoken={page.delta_token}"
        body["value"] = [_delta_item(item, zone_name) for item in page.items]
        return Reply(200, body, _applied(call, size))

    # -- subscriptions -------------------------------------------------------------------------------------

    async def _create_subscription(self, call: Call, target: Target) -> Reply:
        if self.faults.take_quota():
            raise GraphError(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; Reason: Maximum number of subscriptions "
                "has been reached]",
            )
        draft = self.state.subscription_draft(target.app, call.body)
        # Checked before the handshake (no point validating a duplicate) and again after it (it took a while).
        self.state.check_conflict(draft)
        for url in filter(None, (draft.notification_url, draft.lifecycle_url)):
            problem = await self.notifier.validate(url)
            if problem is not None:
                raise GraphError(400, "ValidationError", problem)
        subscription = self.state.add_subscription(draft)
        context = f"{call.base_url}/v1.0/$metadata#subscriptions/$entity"
        return Reply(201, {"@odata.context": context, **subscription.to_graph()})

    async def _list_subscriptions(self, call: Call, target: Target) -> Reply:
        mine = [sub.to_graph() for sub in self.state.live_subscriptions() if sub.app.client_id == target.app.client_id]
        return Reply(200, {"@odata.context": f"{call.base_url}/v1.0/$metadata#subscriptions", "value": mine})

    async def _get_subscription(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        found = self.state.subscription(target.item_id, target.app)
        return Reply(
            200, {"@odata.context": f"{call.base_url}/v1.0/$metadata#subscriptions/$entity", **found.to_graph()}
        )

    async def _renew_subscription(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        found = self.state.renew_subscription(target.item_id, target.app, call.body)
        return Reply(
            200, {"@odata.context": f"{call.base_url}/v1.0/$metadata#subscriptions/$entity", **found.to_graph()}
        )

    async def _delete_subscription(self, call: Call, target: Target) -> Reply:
        assert target.item_id is not None
        found = self.state.subscription(target.item_id, target.app)
        self.state.remove_subscription(found.id)
        return Reply(204)

    # -- $batch --------------------------------------------------------------------------------------------

    async def _batch(self, call: Call, target: Target) -> Reply:
        items = _batch_items(call.body)
        by_id = {item["id"]: item for item in items}
        runs: dict[str, asyncio.Task[Reply]] = {}
        done: dict[str, Reply] = {}

        async def run(item: dict[str, Any]) -> Reply:
            dependencies = [started(dependency) for dependency in item.get("dependsOn") or []]
            replies = await asyncio.gather(*dependencies)
            if any(reply.status >= 400 for reply in replies):
                reply = self.error_reply(
                    GraphError(424, "FailedDependency", "Request failed due to a failed dependency."), call
                )
            else:
                reply = await self._batch_item(call, item, target.app)
            done[item["id"]] = reply
            return reply

        def started(item_id: str) -> asyncio.Task[Reply]:
            if item_id not in runs:
                runs[item_id] = asyncio.ensure_future(run(by_id[item_id]))
            return runs[item_id]

        # Items without dependsOn run in parallel, as Graph runs them ("in any order"), each against its
        # mailbox's limits: five items for one mailbox meet its concurrency limit as five requests would.
        await asyncio.gather(*(started(item["id"]) for item in items))
        responses = []
        # In the order the items finished (a dependency before its dependents), not as listed: Graph's answers
        # "might appear in a different order", to be matched by id.
        for item_id, reply in done.items():
            # Request ids belong to the outer response; an item carries only its own headers (Retry-After...).
            headers = {k: v for k, v in reply.headers.items() if k not in ("request-id", "client-request-id")}
            entry: dict[str, Any] = {"id": item_id, "status": reply.status}
            if reply.body is not None:
                headers.setdefault("Content-Type", "application/json")
            entry["headers"] = headers
            if reply.body is not None:
                entry["body"] = reply.body
            responses.append(entry)
        return Reply(200, {"responses": responses})

    async def _batch_item(self, call: Call, item: dict[str, Any], app: AppRegistration) -> Reply:
        url = re.sub(r"^/?(v1\.0|beta)(?=/)", "", str(item["url"]))
        headers = CIMultiDict({str(key): str(value) for key, value in (item.get("headers") or {}).items()})
        if "client-request-id" not in headers and "client-request-id" in call.headers:
            headers["client-request-id"] = call.headers["client-request-id"]
        inner = Call.parse(item["method"], url, headers, item.get("body"), call.base_url, batch_item=True)
        return await self.serve(inner, app=app)


# -- helpers ---------------------------------------------------------------------------------------------------

_QUERY_SAFE = "$@:'(),="


_USER_ROUTES = {
    (): "user",
    ("events",): "events",
    ("events", "*"): "event",
    ("events", "*", "instances"): "instances",
    ("calendarview",): "calendarView",
    ("calendarview", "delta"): "delta",
    ("calendarview", "delta()"): "delta",
    ("sendmail",): "sendMail",
    ("mailboxsettings",): "mailboxSettings",
}


def _route_kind(segments: list[str]) -> str | None:
    """Which route a path names (also the name fault rules and the stats use), or None."""
    lowered = [segment.lower() for segment in segments]
    if lowered == ["$batch"]:
        return "batch"
    if lowered == ["subscriptions"]:
        return "subscriptions"
    if len(lowered) == 2 and lowered[0] == "subscriptions":
        return "subscription"
    if len(lowered) == 3 and lowered[0] == "groups" and lowered[2] == "transitivemembers":
        return "transitiveMembers"
    if len(lowered) < 2 or lowered[0] != "users":
        return None
    rest = lowered[2:]
    if rest[:1] == ["calendar"] and len(rest) > 1:
        rest = rest[1:]  # /users/{id}/calendar/events is the same default calendar
    if rest[:1] == ["events"] and len(rest) > 1:
        rest[1] = "*"
    return _USER_ROUTES.get(tuple(rest))


def _delta_item(item: Instance | str, zone_name: str) -> dict[str, Any]:
    if isinstance(item, str):
        return render_removed(item)
    if item.type == "occurrence":
        return render_stub(item, zone_name=zone_name)
    return render(item, zone_name=zone_name)


def _window(call: Call) -> tuple[Any, Any]:
    start = call.option("startDateTime")
    end = call.option("endDateTime")
    if not start or not end:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters StartDateTime and "
            "EndDateTime.",
        )
    low, high = parse_instant(start), parse_instant(end)
    if high <= low:
        raise GraphError(400, "ErrorInvalidParameter", "The parameter 'EndDateTime' must be after 'StartDateTime'.")
    return low, high


def _zone(call: Call) -> str:
    wanted = call.prefer("outlook.timezone")
    return wanted if wanted and known_zone(wanted) else "UTC"


def _page_size(call: Call, default: int) -> int:
    top = call.option("top")
    if top is not None:
        return max(1, min(MAX_PAGE, _int_option(top, default)))
    preferred = call.prefer("odata.maxpagesize")
    if preferred is not None:
        return max(1, min(MAX_PAGE, _int_option(preferred, default)))
    return default


def _applied(call: Call, size: int | None = None) -> dict[str, str]:
    """`Preference-Applied` for the preferences this answer honoured."""
    applied = []
    if size is not None and call.prefer("odata.maxpagesize") is not None:
        applied.append(f"odata.maxpagesize={size}")
    wanted = call.prefer("outlook.timezone")
    if wanted and known_zone(wanted):
        applied.append(f'outlook.timezone="{wanted}"')
    return {"Preference-Applied": ", ".join(applied)} if applied else {}


def _int_option(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"Invalid value '{value}' for a numeric query option.", "BadRequest") from None


def _batch_items(body: Any) -> list[dict[str, Any]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise bad_request("Invalid batch payload format: a batch needs a non-empty 'requests' array.", "BadRequest")
    if len(requests) > MAX_BATCH:
        raise bad_request(f"Invalid batch payload format: a batch holds at most {MAX_BATCH} requests.", "BadRequest")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) for key in ("id", "method", "url")):
            raise bad_request(
                "Invalid batch payload format: each request needs an id, a method and a url.", "BadRequest"
            )
        if urlsplit(item["url"]).scheme:
            # Graph's JSON batching page: each url is relative to the version (`/users/...`), never absolute.
            raise bad_request(
                f"Invalid batch payload format: the url of request id {item['id']} must be relative.", "BadRequest"
            )
        if item["id"] in seen:
            raise bad_request(f"Invalid batch payload format: duplicate request id '{item['id']}'.", "BadRequest")
        seen.add(item["id"])
        headers = {str(key).lower() for key in (item.get("headers") or {})}
        if item.get("body") is not None and "content-type" not in headers:
            raise bad_request(
                f"Write request id : {item['id']} does not contain Content-Type header or body.", "BadRequest"
            )
        if isinstance(item.get("body"), str):
            item["body"] = _decoded_body(item["body"])
    for item in requests:
        for dependency in item.get("dependsOn") or []:
            if dependency not in seen:
                raise bad_request(
                    f"Invalid batch payload format: dependsOn names unknown id '{dependency}'.", "BadRequest"
                )
    _check_no_cycle({item["id"]: list(item.get("dependsOn") or []) for item in requests})
    return requests


def _check_no_cycle(depends_on: dict[str, list[str]]) -> None:
    finished: set[str] = set()

    def visit(item_id: str, chain: tuple[str, ...]) -> None:
        for dependency in depends_on[item_id]:
            if dependency in chain:
                raise bad_request(f"The batch request has a dependsOn cycle through '{dependency}'.", "BadRequest")
            if dependency not in finished:
                visit(dependency, (*chain, dependency))
        finished.add(item_id)

    for item_id in depends_on:
        visit(item_id, (item_id,))


def _decoded_body(text: str) -> Any:
    """A batch item's body given as a string: JSON text, or base64 of it (what SDKs send for streams)."""
    for candidate in (text, _try_b64(text)):
        if candidate is None:
            continue
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return text


def _try_b64(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _last(segments: list[str]) -> str:
    return segments[-1] if segments else ""


async def _sleep(delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
