"""A Microsoft Graph v1.0 + Entra ID tenant for calendar work, served over HTTPS on loopback.

It stands in for Microsoft in the tests, the demo and the benchmarks, so it follows Graph's documented
behaviour (and the payloads in tests/fixtures/graph) rather than the bridge's reading of it, faults
included. It imports nothing of the bridge outside emulators/

In-process use (tests)::

    emulator = GraphEmulator(ca_file=tmp_path / "ca.pem")
    app = emulator.add_app()                       # AppRegistration: tenant_id, client_id, client_secret
    adele = emulator.add_user("AdeleV@contoso.com")  # DirectoryUser: id (GUID), user_principal_name
    base_url = await emulator.start()              # https://127.0.0.1:PORT (port 0 picks a free one)
    ...
    await emulator.stop()

`emulator.authority` is what azure-identity's `ClientSecretCredential(authority=...)` takes, `emulator.graph_url`
the SDK's base URL (`.../v1.0`), `emulator.ca_file` what clients verify with.

Python API (the control API under /_control mirrors it for other processes; see graph_control.py):

- directory: `add_app(tenant_id=None, client_id=None, client_secret=None)`, `add_user(upn, display_name=None, *,
  user_id=None, mail=None, tenant_id=None, has_mailbox=True, employee_id=None)`, `remove_user(user)`,
  `expire_tokens()`,
  `rotate_secret(client_id=None, secret=None)`, `grant(client_id, roles)`
  (application permissions: a token carries them in its `roles` claim; a call without the one it needs answers
  Graph's 403 `ErrorAccessDenied`), `restrict_access(client_id, users)` (an application access policy: other
  mailboxes answer 403 `ErrorAccessDenied` "[RAOP] ... AccessPolicy").
- groups: `add_group(display_name, members=(), *, group_id=None)`, `add_group_members(group_id, members)`,
  `remove_group_members(group_id, members)` (members by userPrincipalName, mail or id; a group's id nests it),
  read by the bridge as `GET /groups/{id}/transitiveMembers` (graph_groups.py).
- calendars "as Outlook": `create_event_as_outlook(user, payload) -> dict`, `update_event_as_outlook(user,
  event_id, payload) -> dict`, `delete_event_as_outlook(user, event_id)`, `events(user) -> list[dict]` (raw stored
  state), `respond_as_outlook(user, event_id, response)`. Outlook may create invitations: `isOrganizer: false`
  plus `organizer`, `responseStatus`, `isCancelled`; an event with attendees in the tenant is a meeting whose
  copies follow the organizer's changes and cancellation (graph_meetings.py).
- faults: `inject_fault(spec)` (the control API's JSON), or by name: `throttle(count, *, user, route,
  retry_after)`, `throttle_share(share, seconds, *, retry_after=1)`, `fail(count, *, status=503, ...)`,
  `set_latency(ms)`, `drop_notifications(n)`, `drop_notification_share(share)`,
  `duplicate_notifications(n)`, `shuffle_notifications(on)`, `expire_delta_tokens(user, status=410, *,
  after_pages=0, times=1)`, `empty_delta_pages(n, user=None)`, `malformed_answers(n, user=None)`,
  `subscription_quota(n)`, `clear_faults()`.
- subscriptions: `subscriptions()`, `send_lifecycle(subscription_id, event)`, `remove_subscription(id)` (sends
  subscriptionRemoved), `expire_subscription(id)`, `await drain_notifications(within)`.
- inspection: `stats()`, `sent_mail()`, `reset(keep_directory=True)`.

Standalone: `python -m emulators.graph --port 8443 --ca-file /tmp/ca.pem --tenant T --client-id C
--client-secret S --user adele@contoso.com --user bob@contoso.com=<guid>`; it prints the URLs, the CA path and
the credentials, then (last line) the same as one JSON object.

Choices where Graph leaves room: unknown users on mailbox routes answer 404 `ErrorInvalidUser` (a user added
without a mailbox: 404 `MailboxNotEnabledForRESTAPI`), `GET /users/{id}` of an unknown user 404
`Request_ResourceNotFound`; ids are always immutable, whether or not `Prefer: IdType="ImmutableId"` is sent;
notification URLs may be plain http on loopback (Graph insists on https); the MailboxConcurrency 429 carries
`Retry-After: 1` (configurable) so well-behaved clients are not slowed down for long.
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from emulators.graph_api import Call, GraphApi, Reply
from emulators.graph_common import GraphError, new_guid, now
from emulators.graph_control import add_control_routes
from emulators.graph_events import Change
from emulators.graph_faults import FaultRule, Faults, Stats, rule_from_json
from emulators.graph_groups import DirectoryGroup
from emulators.graph_meetings import Meetings
from emulators.graph_model import AppRegistration, DirectoryUser, GraphState, TokenError
from emulators.graph_notify import Notifier
from emulators.graph_render import render, render_stored
from emulators.running import run_standalone, serve, until_signalled
from emulators.tls import LoopbackCA

log = logging.getLogger(__name__)

LIFECYCLE_EVENTS = ("missed", "reauthorizationRequired", "subscriptionRemoved")
_JSON = "application/json; charset=utf-8"


class GraphEmulator:
    def __init__(
        self,
        *,
        ca_file: str | Path | None = None,
        ca: LoopbackCA | None = None,
        tenant_id: str | None = None,
        concurrency_limit: int = 4,
        rate_limit: tuple[int, float] | None = (10_000, 600.0),
        delta_expired_status: int = 410,
        notification_batch_delay: float = 0.05,
        notification_retry_delays: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
        notification_timeout: float = 3.0,
        notification_ssl: ssl.SSLContext | bool | None = None,
    ) -> None:
        if ca is None:
            ca = LoopbackCA(ca_file or Path(tempfile.mkdtemp(prefix="graph-emulator-")) / "ca.pem")
        self.ca = ca
        self.ca_file = ca.ca_file
        self.state = GraphState(default_tenant_id=tenant_id)
        self.state.delta.expired_status = delta_expired_status
        self.faults = Faults(concurrency_limit=concurrency_limit, rate_limit=rate_limit)
        self._stats = Stats()
        if notification_ssl is None:
            # Subscribers may serve a public certificate or one from this CA (the demo's bridge does).
            notification_ssl = ssl.create_default_context()
            notification_ssl.load_verify_locations(cadata=ca.ca_pem.decode("ascii"))
        self.notifier = Notifier(
            self.faults,
            self._stats,
            ssl_context=notification_ssl,
            batch_delay=notification_batch_delay,
            retry_delays=notification_retry_delays,
            timeout=notification_timeout,
        )
        self.api = GraphApi(self.state, self.faults, self._stats, self.notifier)
        self.meetings = Meetings(self.state)
        self.state.on_change(self._notify)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve HTTPS on `host:port` (0: a free port); the base URL, e.g. https://127.0.0.1:PORT."""
        if self._runner is not None:
            raise RuntimeError("the Graph emulator is already running")
        self._runner, self._base_url = await serve(self.app, host, port, self.ca.server_context())
        return self._base_url

    async def stop(self) -> None:
        await self.notifier.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GraphEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the Graph emulator is not started")
        return self._base_url

    @property
    def authority(self) -> str:
        """azure-identity's `authority`: the token endpoint is {authority}/{tenant}/oauth2/v2.0/token."""
        return self.base_url

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_control"

    # -- directory -----------------------------------------------------------------------------------------

    def add_app(
        self, tenant_id: str | None = None, client_id: str | None = None, client_secret: str | None = None
    ) -> AppRegistration:
        return self.state.add_app(tenant_id, client_id, client_secret)

    def grant(self, client_id: str, roles: Iterable[str]) -> AppRegistration:
        """Set the app's application permissions; tokens issued from now on carry them (`roles` claim)."""
        return self.state.grant(client_id, roles)

    def restrict_access(self, client_id: str, users: Iterable[str] | None) -> AppRegistration:
        """An application access policy: the app reaches only these users' mailboxes (None: no policy)."""
        return self.state.restrict_access(client_id, users)

    def add_user(
        self,
        user_principal_name: str,
        display_name: str | None = None,
        *,
        user_id: str | None = None,
        mail: str | None = None,
        tenant_id: str | None = None,
        has_mailbox: bool = True,
        employee_id: str | None = None,
    ) -> DirectoryUser:
        return self.state.add_user(
            user_principal_name,
            display_name,
            user_id=user_id,
            mail=mail,
            tenant_id=tenant_id,
            has_mailbox=has_mailbox,
            employee_id=employee_id,
        )

    def add_group(
        self, display_name: str, members: Iterable[str] = (), *, group_id: str | None = None
    ) -> DirectoryGroup:
        """An Entra ID security group of the tenant; `members` as `add_group_members` takes them."""
        group = self.state.add_group(display_name, group_id=group_id)
        return self.add_group_members(group.id, members)

    def add_group_members(self, group_id: str, members: Iterable[str]) -> DirectoryGroup:
        """Members by userPrincipalName, mail or object id; a group's id nests that group."""
        return self.state.groups.add_members(group_id, [self._member_id(member) for member in members])

    def remove_group_members(self, group_id: str, members: Iterable[str]) -> DirectoryGroup:
        return self.state.groups.remove_members(group_id, [self._member_id(member) for member in members])

    def expire_tokens(self) -> None:
        self.state.expire_tokens()

    def rotate_secret(self, client_id: str | None = None, secret: str | None = None) -> str:
        """A new client secret for the app (the only one when `client_id` is None); the old secret and the tokens
        issued with it are refused from now on. Returns the new secret."""
        if client_id is None:
            if len(self.state.apps) != 1:
                raise ValueError("name the app whose secret to rotate: the tenant has several")
            client_id = next(iter(self.state.apps))
        return self.state.rotate_secret(client_id, secret).client_secret

    def remove_user(self, user: str) -> None:
        """The user leaves the directory with their mailbox: calls for them answer 404 ErrorInvalidUser, and the
        subscriptions on their calendar are removed with a subscriptionRemoved lifecycle notification."""
        _, watching = self.state.remove_user(user)
        for subscription in watching:
            self.remove_subscription(subscription.id)

    # -- calendars as Outlook changes them -----------------------------------------------------------------

    def create_event_as_outlook(self, user: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """An event the user made in Outlook (Graph shape, times in UTC); notifies subscribers like any change.

        With attendees who are users of the tenant, it is a meeting: each gets a copy (graph_meetings.py).
        """
        mailbox = self.state.mailbox_for(user, None)
        event, _ = mailbox.create(dict(payload), as_outlook=True)
        if event.props.get("isOrganizer", True) is not False:
            self.meetings.invite(mailbox, event)
        return render(mailbox.get(event.id))

    def update_event_as_outlook(self, user: str, event_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Change an event, a series or (making it an exception) one occurrence; a meeting's copies follow."""
        mailbox = self.state.mailbox_for(user, None)
        instance = mailbox.update(event_id, dict(payload), as_outlook=True)
        self.meetings.updated(mailbox, instance)
        return render(instance)

    def delete_event_as_outlook(self, user: str, event_id: str) -> None:
        """Delete an event, a series, or one occurrence of a series; for a meeting the user organises, that is
        cancelling it: the attendees' copies are marked cancelled."""
        mailbox = self.state.mailbox_for(user, None)
        instance = mailbox.get(event_id)
        mailbox.delete(event_id)
        self.meetings.cancelled(mailbox, instance)

    def respond_as_outlook(self, user: str, event_id: str, response: str) -> dict[str, Any]:
        """The user answers an invitation: accepted, tentativelyAccepted or declined (kept in the calendar)."""
        return render(self.meetings.respond(self.state.mailbox_for(user, None), event_id, response))

    def events(self, user: str) -> list[dict[str, Any]]:
        """The stored events (single events and series masters with their exceptions), Graph-shaped, raw times."""
        mailbox = self.state.mailbox_for(user, None)
        return [render_stored(event) for event in sorted(mailbox.events.values(), key=lambda item: item.created)]

    # -- faults --------------------------------------------------------------------------------------------

    def inject_fault(self, spec: Mapping[str, Any]) -> None:
        """Apply one fault described as the control API's JSON (`{"kind": ...}`; see graph_control.py)."""
        kind = spec.get("kind")
        user = spec.get("user")
        user_id = self._user_id(user) if user else None
        count = int(spec.get("count", 1))
        if kind in ("throttle", "unavailable"):
            self.faults.add_rule(rule_from_json(spec, user_id))
        elif kind == "latency":
            self.set_latency(float(spec.get("ms", 0)))
        elif kind == "dropNotifications" and "share" in spec:
            self.drop_notification_share(float(spec["share"]))
        elif kind == "dropNotifications":
            self.drop_notifications(count)
        elif kind == "duplicateNotifications":
            self.duplicate_notifications(count)
        elif kind == "shuffleNotifications":
            self.shuffle_notifications(bool(spec.get("enabled", True)))
        elif kind == "expireDeltaTokens":
            if not user:
                raise ValueError("expireDeltaTokens needs a user")
            status = int(spec.get("status", self.state.delta.expired_status))
            after_pages, times = int(spec.get("afterPages", 0)), int(spec.get("times", 1))
            self.expire_delta_tokens(user, status, after_pages=after_pages, times=times)
        elif kind == "emptyDeltaPages":
            self.empty_delta_pages(count, user=user)
        elif kind == "malformedAnswers":
            self.malformed_answers(count, user=user)
        elif kind == "subscriptionQuota":
            self.subscription_quota(count)
        elif kind == "expireTokens":
            self.expire_tokens()
        elif kind == "rotateSecret":
            self.rotate_secret(spec.get("clientId"), spec.get("secret"))
        elif kind == "removeUser":
            if not user:
                raise ValueError("removeUser needs a user")
            self.remove_user(user)
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def throttle(
        self, count: int = 1, *, user: str | None = None, route: str | None = None, retry_after: int | None = 1
    ) -> None:
        """The next `count` matching requests answer 429 ApplicationThrottled with Retry-After."""
        user_id = self._user_id(user) if user else None
        self.faults.add_rule(FaultRule(429, count, user_id, route, retry_after))

    def fail(
        self,
        count: int = 1,
        *,
        status: int = 503,
        user: str | None = None,
        route: str | None = None,
        retry_after: int | None = 1,
    ) -> None:
        """The next `count` matching requests answer `status` (503, 500 or 504), with Retry-After if given."""
        user_id = self._user_id(user) if user else None
        self.faults.add_rule(FaultRule(status, count, user_id, route, retry_after))

    def set_latency(self, ms: float) -> None:
        self.faults.latency_ms = max(0.0, ms)

    def drop_notifications(self, count: int) -> None:
        self.faults.drop_notifications += count

    def drop_notification_share(self, share: float) -> None:
        """Drop this share of notifications (0 to 1, picked at random) until changed or faults are cleared."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a share of notifications is between 0 and 1, not {share}")
        self.faults.drop_share = share

    def throttle_share(self, share: float, seconds: float, *, retry_after: int = 1, status: int = 429) -> None:
        """For `seconds`, answer this share of Graph requests (picked at random) `status` with Retry-After."""
        self.faults.add_rule(
            rule_from_json({"status": status, "share": share, "seconds": seconds, "retryAfter": retry_after}, None)
        )

    def duplicate_notifications(self, count: int) -> None:
        self.faults.duplicate_notifications += count

    def shuffle_notifications(self, enabled: bool = True) -> None:
        self.faults.shuffle_notifications = enabled

    def expire_delta_tokens(self, user: str, status: int = 410, *, after_pages: int = 0, times: int = 1) -> int:
        """Forget the user's delta tokens and pages: using one answers `status` (410 or 400) SyncStateNotFound.

        With `after_pages`, that happens once that many more delta pages of the user have been served (and again
        after as many more, `times` times in all): a round in progress then fails on its next page, as Graph's
        does (microsoft-graph-docs-contrib#7790).
        """
        if status not in (400, 410):
            raise ValueError("expired delta tokens answer 400 or 410")
        if after_pages < 0 or times < 1:
            raise ValueError("afterPages is 0 or more pages, times 1 or more")
        if after_pages:
            self.faults.delta_expiry[self._user_id(user)] = (after_pages, status, after_pages, times)
            return 0
        return self.state.delta.expire(self._user_id(user), status)

    def empty_delta_pages(self, count: int, *, user: str | None = None) -> None:
        """The next `count` delta pages (of `user`, or anyone's) come back empty, with a nextLink."""
        key = self._user_id(user) if user else None
        self.faults.empty_delta_pages[key] = self.faults.empty_delta_pages.get(key, 0) + count

    def malformed_answers(self, count: int, *, user: str | None = None) -> None:
        """The next `count` answers on `user`'s mailbox (or anyone's) are 200 but not the documented shape."""
        key = self._user_id(user) if user else None
        self.faults.malformed_answers[key] = self.faults.malformed_answers.get(key, 0) + count

    def subscription_quota(self, count: int = 1) -> None:
        """The next `count` subscription creations answer 403 (the mailbox's subscription quota)."""
        self.faults.subscription_quota += count

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- subscriptions -------------------------------------------------------------------------------------

    def subscriptions(self) -> list[dict[str, Any]]:
        return [sub.to_graph() | {"userId": sub.user_id} for sub in self.state.live_subscriptions()]

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        """POST a lifecycle notification to the subscription's lifecycleNotificationUrl (in the background).

        `subscriptionRemoved` also deletes the subscription, as Graph does when it removes one.
        """
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle events are {', '.join(LIFECYCLE_EVENTS)}, not {event!r}")
        subscription = self.state.subscription(subscription_id)
        if subscription.lifecycle_url is None and event != "subscriptionRemoved":
            raise ValueError(f"subscription {subscription_id} has no lifecycleNotificationUrl")
        if subscription.lifecycle_url is not None:
            self._stats.note("lifecycle")
            self.notifier.enqueue(subscription.lifecycle_url, subscription.lifecycle(event), faults=False)
        if event == "subscriptionRemoved":
            self.state.remove_subscription(subscription.id)

    def remove_subscription(self, subscription_id: str) -> None:
        """Graph removing a subscription on its own: it is gone, and its lifecycle URL hears subscriptionRemoved."""
        self.send_lifecycle(subscription_id, "subscriptionRemoved")

    def expire_subscription(self, subscription_id: str) -> None:
        """Let a subscription run out now: no more notifications, and it is gone from GET and PATCH."""
        self.state.set_expiry(self.state.subscription(subscription_id), now())
        self.state.purge_expired()

    async def drain_notifications(self, within: float = 10.0) -> bool:
        """Wait up to `within` seconds until every queued notification was delivered (or given up)."""
        return await self.notifier.drain(within)

    # -- inspection ----------------------------------------------------------------------------------------

    def stats(self, *, log_limit: int | None = None) -> dict[str, Any]:
        """Requests by route / user / status, Prefer values seen, peak concurrency per user, notifications, log."""
        return self._stats.to_json(log_limit=log_limit)

    def clear_stats(self) -> None:
        self._stats.clear()

    def sent_mail(self) -> list[dict[str, Any]]:
        return [mail.to_json() for mail in self.state.sent_mail]

    def reset(self, *, keep_directory: bool = True) -> None:
        """Empty calendars, subscriptions, delta states, mail, faults and stats (apps and users stay if kept)."""
        self.state.reset(keep_directory=keep_directory)
        self.faults.clear()
        self.api.limits.clear()
        self._stats.clear()

    # -- HTTP ----------------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration)
        app.router.add_get("/common/discovery/instance", self._instance_discovery)
        app.router.add_route("*", "/v1.0/{tail:.*}", self._graph)
        add_control_routes(app, self)
        return app

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        base_url = f"{request.scheme}://{request.host}"
        relative = request.raw_path[len("/v1.0") :]
        data = await request.read() if request.can_read_body else b""
        try:
            body = json.loads(data) if data.strip() else None
        except ValueError:
            call = Call.parse(request.method, relative, request.headers, None, base_url)
            error = GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
                "valid JSON format.",
            )
            return _response(self.api.error_reply(error, call), call)
        call = Call.parse(request.method, relative, request.headers, body, base_url)
        return _response(await self.api.serve(call), call)

    async def _token(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        form = await request.post()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        status = 200
        body: dict[str, Any]
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        fault = self.faults.take("token", None)
        try:
            if fault is not None:
                headers.update(fault.headers)
                raise TokenError(fault.status, "temporarily_unavailable", 90033, "A transient error has occurred.")
            body = self.state.issue_token(request.match_info["tenant"], fields)
        except TokenError as error:
            status, body = error.status, error.body
        self._stats.request(
            method="POST", path=request.path, status=status, route="token", user=None, started=started, prefer=[]
        )
        return web.json_response(body, status=status, headers=headers)

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        tenant = request.match_info["tenant"]
        return web.json_response(
            {
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def _instance_discovery(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        host = request.host
        return web.json_response(
            {
                "tenant_discovery_endpoint": f"{base}/common/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    def _notify(self, change: Change) -> None:
        for subscription in self.state.subscriptions_for(change):
            self.notifier.enqueue(subscription.notification_url, subscription.notification(change))

    def _member_id(self, key: str) -> str:
        if key.lower() in self.state.groups.groups:
            return key.lower()
        user = self.state.find_user(key)
        if user is None:
            raise ValueError(f"no user or group {key!r}")
        return user.id

    def _user_id(self, user: str) -> str:
        found = self.state.find_user(user)
        if found is None:
            raise ValueError(f"no user {user!r}")
        return found.id


def _response(reply: Reply, call: Call) -> web.Response:
    headers = dict(reply.headers)
    request_id = headers.setdefault("request-id", new_guid())
    headers.setdefault("client-request-id", call.headers.get("client-request-id", request_id))
    if reply.body is None:
        return web.Response(status=reply.status, headers=headers)
    headers["Content-Type"] = _JSON
    return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)


# -- standalone --------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.graph",
        description="A Microsoft Graph + Entra ID tenant emulator for calendars, over HTTPS on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--ca-file", type=Path, help="where to write the CA certificate clients verify with")
    parser.add_argument("--tenant", help="tenant id of the app registration (default: a new GUID)")
    parser.add_argument("--client-id", help="client id of the app registration (default: a new GUID)")
    parser.add_argument("--client-secret", help="client secret of the app registration (default: random)")
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="UPN[=GUID]",
        help="a user with a mailbox (repeatable); GUID fixes the object id",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every /v1.0 response")
    parser.add_argument("--no-rate-limit", action="store_true", help="no 10,000 requests / 10 minutes limit")
    parser.add_argument("--delta-expired-status", type=int, choices=(400, 410), default=410)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = GraphEmulator(
        ca_file=args.ca_file,
        tenant_id=args.tenant,
        rate_limit=None if args.no_rate_limit else (10_000, 600.0),
        delta_expired_status=args.delta_expired_status,
    )
    app = emulator.add_app(args.tenant, args.client_id, args.client_secret)
    users = []
    for spec in args.user:
        upn, _, guid = spec.partition("=")
        users.append(emulator.add_user(upn, user_id=guid or None))
    emulator.set_latency(args.latency_ms)
    base_url = await emulator.start(args.host, args.port)
    summary = {
        "baseUrl": base_url,
        "authority": emulator.authority,
        "graphUrl": emulator.graph_url,
        "controlUrl": emulator.control_url,
        "caFile": str(emulator.ca_file),
        "tenantId": app.tenant_id,
        "clientId": app.client_id,
        "clientSecret": app.client_secret,
        "users": [user.to_graph() for user in users],
    }
    lines = [
        "Graph emulator listening",
        f"  authority (token endpoint host): {emulator.authority}",
        f"  Graph base URL:                  {emulator.graph_url}",
        f"  control API:                     {emulator.control_url}",
        f"  CA file:                         {emulator.ca_file}",
        f"  tenant / client id:              {app.tenant_id} / {app.client_id}",
        f"  client secret:                   {app.client_secret}",
        *(f"  user:                            {user.user_principal_name} ({user.id})" for user in users),
        json.dumps(summary),
    ]
    print("\n".join(lines), flush=True)
    try:
        await until_signalled()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_standalone("graph emulator", _serve(args), args.log_level)


if __name__ == "__main__":
    sys.exit(main())
