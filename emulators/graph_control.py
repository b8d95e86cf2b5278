"""The Graph emulator's control API: JSON under /_control/, no auth (loopback use only).

The demo and the benchmarks drive the emulator from other processes through it; in-process tests may call the
`GraphEmulator` methods it mirrors. Errors come back in Graph's error shape (400 for a bad request, 404 for an
unknown user, event or subscription).

    GET    /_control/health                           {"status": "ok", "baseUrl", "graphUrl", "authority", "caFile"}
    GET    /_control/apps                             {"value": [app]}
    POST   /_control/apps          {tenantId?, clientId?, clientSecret?, displayName?}
                                                      201 app = {tenantId, clientId, clientSecret, displayName,
                                                                 servicePrincipalId, roles, mailboxScope}
    PUT    /_control/apps/{clientId}/roles  {"roles": [...]}   200 app (application permissions for new tokens)
    PUT    /_control/apps/{clientId}/accessPolicy  {"users": [UPN or id, ...] | null}
                                                      200 app (an application access policy; null lifts it)
    GET    /_control/users                            {"value": [user]}
    POST   /_control/users         {userPrincipalName, displayName?, id?, mail?, tenantId?, hasMailbox?}
                                                      201 user = {id, userPrincipalName, displayName, mail,
                                                                  tenantId, hasMailbox}
    GET    /_control/users/{user}/events              {"value": [stored event]} (Graph shape, start/end as stored,
                                                      all singleValueExtendedProperties; series masters add
                                                      exceptionOccurrences [...] and cancelledOccurrences [...])
    POST   /_control/users/{user}/events   <Graph event; also isOrganizer, organizer, responseStatus, isCancelled>
                                                      201 event (Graph shape, UTC)
    PATCH  /_control/users/{user}/events/{id}  <partial event>     200 event (an occurrence id makes an exception)
    DELETE /_control/users/{user}/events/{id}                      204 (an occurrence id cancels that occurrence;
                                                      a meeting the user organises is cancelled for its attendees)
    POST   /_control/users/{user}/events/{id}/respond  {"response": "accepted"|"tentativelyAccepted"|"declined"}
                                                      200 event (the attendee's answer; a declined one stays)
    GET    /_control/faults                           faults state
    POST   /_control/faults        {"kind": ..., ...} 200 faults state; kinds:
           throttle               {count=1, user?, route?, retryAfter=1}           next requests answer 429
                                  {share, seconds, ...}          that share of requests, for that long
           unavailable            {count=1, status=503|500|504, user?, route?, retryAfter=1}
           latency                {ms}
           dropNotifications      {count} | {share}                                 share: 0..1 at random, until reset
           duplicateNotifications {count}
           shuffleNotifications   {enabled=true}
           expireDeltaTokens      {user, status=410|400, afterPages=0, times=1}    (after that many more delta
                                                                          pages of the user, mid-round; again
                                                                          after as many, `times` in all)
           emptyDeltaPages        {count, user?}
           malformedAnswers       {count, user?}                 200 answers not in the documented shape
           subscriptionQuota      {count}                                          next creations answer 403
           expireTokens           {}                                               issued tokens answer 401
           rotateSecret           {clientId?, secret?}           new app secret; the old one and its tokens refused
           removeUser             {user}                         user and mailbox gone, subscriptions removed
           (route is one of token, user, events, event, instances, calendarView, transitiveMembers, delta,
            sendMail, mailboxSettings, subscriptions, subscription, batch; user is a UPN or an object id)
    DELETE /_control/faults                           204 (latency back to 0 too)
    PUT    /_control/latency       {"ms": 50}         {"latencyMs": 50}
    PUT    /_control/limits        {concurrency?, concurrencyRetryAfter?, rateLimit?: {requests, seconds} | null,
                                    appRateLimit?: {requests, seconds} | null,
                                    deltaExpiredStatus?: 410|400}           200 faults state
    GET    /_control/subscriptions                    {"value": [subscription as Graph returns it + userId]}
    POST   /_control/subscriptions/{id}/lifecycle  {"lifecycleEvent": "missed"|"reauthorizationRequired"|
                                                    "subscriptionRemoved"}   202 {"subscriptionId", "lifecycleEvent"}
    POST   /_control/subscriptions/{id}/expire        204 (expires now: no notifications, GET/PATCH answer 404)
    DELETE /_control/subscriptions/{id}               204 (removed, with a subscriptionRemoved lifecycle notification)
    POST   /_control/notifications/flush  {timeout?=10}  {"drained": bool, "pending": n}
    GET    /_control/stats?log=N                      {"requests", "byRoute", "byUser", "byStatus", "prefer",
                                                       "peakConcurrency", "requestsBeforeRetryAfter",
                                                       "notifications": {queued, posts,
                                                       delivered, failed, retried, dropped, duplicated,
                                                       validations, lifecycle}, "log": [{method, path, status,
                                                       route, user, time, ms, batchItem, prefer}]}
    DELETE /_control/stats                            204
    GET    /_control/mail                             {"value": [{from, userId, message, saveToSentItems,
                                                       sentDateTime}]}
    POST   /_control/reset         {keepDirectory?=true}   204
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulators.graph_common import GraphError, error_body, new_guid

if TYPE_CHECKING:
    from emulators.graph import GraphEmulator

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_control_routes(app: web.Application, emulator: GraphEmulator) -> None:
    control = _Control(emulator)
    routes = [
        ("GET", "/health", control.health),
        ("GET", "/apps", control.list_apps),
        ("POST", "/apps", control.add_app),
        ("PUT", "/apps/{client_id}/roles", control.grant),
        ("PUT", "/apps/{client_id}/accessPolicy", control.restrict_access),
        ("GET", "/users", control.list_users),
        ("POST", "/users", control.add_user),
        ("GET", "/groups", control.list_groups),
        ("POST", "/groups", control.add_group),
        ("POST", "/groups/{group_id}/members", control.add_group_members),
        ("DELETE", "/groups/{group_id}/members/{member}", control.remove_group_member),
        ("GET", "/users/{user}/events", control.list_events),
        ("POST", "/users/{user}/events", control.create_event),
        ("PATCH", "/users/{user}/events/{event_id}", control.update_event),
        ("DELETE", "/users/{user}/events/{event_id}", control.delete_event),
        ("POST", "/users/{user}/events/{event_id}/respond", control.respond),
        ("GET", "/faults", control.get_faults),
        ("POST", "/faults", control.add_fault),
        ("DELETE", "/faults", control.clear_faults),
        ("PUT", "/latency", control.set_latency),
        ("PUT", "/limits", control.set_limits),
        ("GET", "/subscriptions", control.list_subscriptions),
        ("POST", "/subscriptions/{subscription_id}/lifecycle", control.lifecycle),
        ("POST", "/subscriptions/{subscription_id}/expire", control.expire_subscription),
        ("DELETE", "/subscriptions/{subscription_id}", control.remove_subscription),
        ("POST", "/notifications/flush", control.flush),
        ("GET", "/stats", control.stats),
        ("DELETE", "/stats", control.clear_stats),
        ("GET", "/mail", control.mail),
        ("POST", "/reset", control.reset),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, f"/_control{path}", _guarded(handler))


def _guarded(handler: _Handler) -> _Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (GraphError, ValueError, KeyError, TypeError) as error:
            return control_error(error)

    return guarded


def control_error(error: Exception) -> web.Response:
    """Errors of the control API in Graph's error shape, so one client-side reader serves both APIs."""
    if isinstance(error, GraphError):
        status, code, message = error.status, error.code, error.message
    else:
        status, code, message = 400, "BadRequest", str(error)
    request_id = new_guid()
    return web.json_response(error_body(code, message, request_id, request_id), status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class _Control:
    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator

    async def health(self, request: web.Request) -> web.Response:
        emulator = self.emulator
        return web.json_response(
            {
                "status": "ok",
                "baseUrl": emulator.base_url,
                "graphUrl": emulator.graph_url,
                "authority": emulator.authority,
                "caFile": str(emulator.ca_file),
            }
        )

    async def list_apps(self, request: web.Request) -> web.Response:
        return web.json_response({"value": [app.to_json() for app in self.emulator.state.apps.values()]})

    async def add_app(self, request: web.Request) -> web.Response:
        body = await _json(request)
        app = self.emulator.state.add_app(
            body.get("tenantId"),
            body.get("clientId"),
            body.get("clientSecret"),
            display_name=str(body.get("displayName") or "Presence bridge"),
        )
        return web.json_response(app.to_json(), status=201)

    async def grant(self, request: web.Request) -> web.Response:
        roles = (await _json(request)).get("roles")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise web.HTTPBadRequest(text='expected {"roles": ["Calendars.ReadWrite", ...]}')
        return web.json_response(self.emulator.grant(request.match_info["client_id"], roles).to_json())

    async def restrict_access(self, request: web.Request) -> web.Response:
        users = (await _json(request)).get("users")
        if users is not None and (not isinstance(users, list) or not all(isinstance(u, str) for u in users)):
            raise web.HTTPBadRequest(text='expected {"users": ["adele@contoso.com", ...] | null}')
        return web.json_response(self.emulator.restrict_access(request.match_info["client_id"], users).to_json())

    async def list_users(self, request: web.Request) -> web.Response:
        return web.json_response({"value": [user.to_json() for user in self.emulator.state.users.values()]})

    async def add_user(self, request: web.Request) -> web.Response:
        body = await _json(request)
        upn = body.get("userPrincipalName")
        if not isinstance(upn, str):
            raise ValueError("userPrincipalName is required")
        user = self.emulator.add_user(
            upn,
            body.get("displayName"),
            user_id=body.get("id"),
            mail=body.get("mail"),
            tenant_id=body.get("tenantId"),
            has_mailbox=body.get("hasMailbox", True) is not False,
        )
        return web.json_response(user.to_json(), status=201)

    async def list_groups(self, request: web.Request) -> web.Response:
        groups = self.emulator.state.groups.groups.values()
        return web.json_response({"value": [group.to_json() for group in groups]})

    async def add_group(self, request: web.Request) -> web.Response:
        body = await _json(request)
        name, members = body.get("displayName"), body.get("members", [])
        if not isinstance(name, str) or not _strings(members):
            raise ValueError('expected {"displayName": "...", "members": ["adele@contoso.com", GROUP_ID, ...]}')
        group = self.emulator.add_group(name, members, group_id=body.get("id"))
        return web.json_response(group.to_json(), status=201)

    async def add_group_members(self, request: web.Request) -> web.Response:
        members = (await _json(request)).get("members")
        if not isinstance(members, list) or not _strings(members):
            raise ValueError('expected {"members": ["adele@contoso.com", GROUP_ID, ...]}')
        group = self.emulator.add_group_members(request.match_info["group_id"], members)
        return web.json_response(group.to_json())

    async def remove_group_member(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self.emulator.remove_group_members(info["group_id"], [info["member"]]).to_json())

    async def list_events(self, request: web.Request) -> web.Response:
        return web.json_response({"value": self.emulator.events(request.match_info["user"])})

    async def create_event(self, request: web.Request) -> web.Response:
        event = self.emulator.create_event_as_outlook(request.match_info["user"], await _json(request))
        return web.json_response(event, status=201)

    async def update_event(self, request: web.Request) -> web.Response:
        info = request.match_info
        event = self.emulator.update_event_as_outlook(info["user"], info["event_id"], await _json(request))
        return web.json_response(event)

    async def delete_event(self, request: web.Request) -> web.Response:
        self.emulator.delete_event_as_outlook(request.match_info["user"], request.match_info["event_id"])
        return web.Response(status=204)

    async def respond(self, request: web.Request) -> web.Response:
        info = request.match_info
        body = await _json(request)
        event = self.emulator.respond_as_outlook(info["user"], info["event_id"], str(body.get("response", "")))
        return web.json_response(event)

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.emulator.faults.to_json())

    async def add_fault(self, request: web.Request) -> web.Response:
        self.emulator.inject_fault(await _json(request))
        return web.json_response(self.emulator.faults.to_json())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.emulator.clear_faults()
        return web.Response(status=204)

    async def set_latency(self, request: web.Request) -> web.Response:
        body = await _json(request)
        self.emulator.set_latency(float(body.get("ms", 0)))
        return web.json_response({"latencyMs": self.emulator.faults.latency_ms})

    async def set_limits(self, request: web.Request) -> web.Response:
        body = await _json(request)
        faults = self.emulator.faults
        if "concurrency" in body:
            faults.concurrency_limit = int(body["concurrency"])
        if "concurrencyRetryAfter" in body:
            faults.concurrency_retry_after = int(body["concurrencyRetryAfter"])
        if "rateLimit" in body:
            rate = body["rateLimit"]
            faults.rate_limit = None if rate is None else (int(rate["requests"]), float(rate["seconds"]))
        if "directoryPage" in body:
            page = body["directoryPage"]
            faults.directory_page = None if page is None else int(page)
        if "appRateLimit" in body:
            rate = body["appRateLimit"]
            faults.app_rate_limit = None if rate is None else (int(rate["requests"]), float(rate["seconds"]))
        if "deltaExpiredStatus" in body:
            status = int(body["deltaExpiredStatus"])
            if status not in (400, 410):
                raise ValueError("deltaExpiredStatus is 400 or 410")
            self.emulator.state.delta.expired_status = status
        return web.json_response(faults.to_json())

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        return web.json_response({"value": self.emulator.subscriptions()})

    async def lifecycle(self, request: web.Request) -> web.Response:
        body = await _json(request)
        event = str(body.get("lifecycleEvent") or body.get("event") or "")
        subscription_id = request.match_info["subscription_id"]
        self.emulator.send_lifecycle(subscription_id, event)
        return web.json_response({"subscriptionId": subscription_id, "lifecycleEvent": event}, status=202)

    async def expire_subscription(self, request: web.Request) -> web.Response:
        self.emulator.expire_subscription(request.match_info["subscription_id"])
        return web.Response(status=204)

    async def remove_subscription(self, request: web.Request) -> web.Response:
        self.emulator.remove_subscription(request.match_info["subscription_id"])
        return web.Response(status=204)

    async def flush(self, request: web.Request) -> web.Response:
        body = await _json(request)
        drained = await self.emulator.drain_notifications(float(body.get("timeout", 10)))
        return web.json_response({"drained": drained, "pending": self.emulator.notifier.pending()})

    async def stats(self, request: web.Request) -> web.Response:
        limit = request.query.get("log")
        return web.json_response(self.emulator.stats(log_limit=int(limit) if limit is not None else None))

    async def clear_stats(self, request: web.Request) -> web.Response:
        self.emulator.clear_stats()
        return web.Response(status=204)

    async def mail(self, request: web.Request) -> web.Response:
        return web.json_response({"value": self.emulator.sent_mail()})

    async def reset(self, request: web.Request) -> web.Response:
        body = await _json(request)
        self.emulator.reset(keep_directory=body.get("keepDirectory", True) is not False)
        return web.Response(status=204)
