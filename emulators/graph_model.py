"""The tenant the Graph emulator stands in for, in memory and without HTTP.

`GraphState` holds the app registrations (tenant id, client id, secret), the users (a GUID object id and a
userPrincipalName, either usable as `{id}` in URLs, the UPN case-insensitively), each user's calendar
(`graph_events.Mailbox`), the delta sync states (`graph_delta.DeltaStates`), the subscriptions and the mail
that was sent. It checks requests the way Entra and Graph check them and raises the errors they answer with
(`TokenError` in Entra's shape, `GraphError` in Graph's); turning those into HTTP is `graph.py`'s job.

Unknown users: mailbox routes answer 404 `ErrorInvalidUser` (what Graph answers for a user who is not in the
tenant); a user added with `has_mailbox=False` answers 404 `MailboxNotEnabledForRESTAPI` (a user without an
Exchange Online mailbox); `GET /users/{id}` of an unknown user answers 404 `Request_ResourceNotFound` (the
directory's code).
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from emulators.graph_common import (
    GraphError,
    b64url,
    format_instant,
    format_instant_ms,
    new_guid,
    now,
    parse_instant,
    random_token,
)
from emulators.graph_delta import DeltaStates
from emulators.graph_events import Change, Mailbox, Owner
from emulators.graph_groups import DirectoryGroup, Groups

TOKEN_LIFETIME_S = 3599
MAX_SUBSCRIPTION_MINUTES = 10_080
MAX_CLIENT_STATE = 128
CHANGE_TYPES = ("created", "updated", "deleted")
GRAPH_EVENT_TYPE = "#Microsoft.Graph.Event"
# The application roles an admin grants the bridge's app registration unless a test says otherwise.
DEFAULT_ROLES = frozenset(
    {"Calendars.ReadWrite", "Mail.Send", "User.Read.All", "GroupMember.Read.All", "MailboxSettings.Read"}
)
_READ_CALENDARS = frozenset({"Calendars.Read", "Calendars.ReadWrite"})
_WRITE_CALENDARS = frozenset({"Calendars.ReadWrite"})
# Any one of these application permissions allows the call (route, method).
_NEEDED_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("user", "GET"): frozenset({"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"}),
    ("events", "GET"): _READ_CALENDARS,
    ("events", "POST"): _WRITE_CALENDARS,
    ("event", "GET"): _READ_CALENDARS,
    ("event", "PATCH"): _WRITE_CALENDARS,
    ("event", "DELETE"): _WRITE_CALENDARS,
    ("instances", "GET"): _READ_CALENDARS,
    ("calendarView", "GET"): _READ_CALENDARS,
    ("delta", "GET"): _READ_CALENDARS,
    ("sendMail", "POST"): frozenset({"Mail.Send"}),
    # Microsoft's "List group transitive members": any one of these application permissions.
    ("transitiveMembers", "GET"): frozenset(
        {
            "GroupMember.Read.All",
            "Group.Read.All",
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
        }
    ),
    # Graph permissions reference: mailboxSettings needs MailboxSettings.Read (GET) or .ReadWrite (PATCH).
    ("mailboxSettings", "GET"): frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"}),
    ("mailboxSettings", "PATCH"): frozenset({"MailboxSettings.ReadWrite"}),
}
# Routes of the directory (not of a mailbox): Graph refuses them in the directory's words.
_DIRECTORY_ROUTES = frozenset({"user", "transitiveMembers"})
_RESOURCE = re.compile(r"^/?users(?:/|\(')(?P<user>[^/']+)(?:'\))?(?:/calendar)?/events/?$", re.IGNORECASE)
# Exchange change keys are base64 of a fixed header, a store id and a counter (compare the fixtures' keys).
_CHANGE_KEY_HEADER = b"\x0f\x00\x00\x00\x16\x00\x00\x00"


@dataclass(frozen=True)
class AppRegistration:
    tenant_id: str
    client_id: str
    client_secret: str
    display_name: str = "Presence bridge"
    service_principal_id: str = field(default_factory=new_guid)
    # Application permissions with admin consent: a token carries those granted when it was issued.
    roles: frozenset[str] = DEFAULT_ROLES
    # An Exchange Online application access policy: the user ids whose mailboxes the app may reach (None: all).
    mailbox_scope: frozenset[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "displayName": self.display_name,
            "servicePrincipalId": self.service_principal_id,
            "roles": sorted(self.roles),
            "mailboxScope": None if self.mailbox_scope is None else sorted(self.mailbox_scope),
        }


@dataclass(frozen=True)
class DirectoryUser:
    id: str
    user_principal_name: str
    display_name: str
    mail: str
    tenant_id: str
    has_mailbox: bool = True
    employee_id: str | None = None

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "mail": self.mail,
            "employeeId": self.employee_id,
        }

    def to_json(self) -> dict[str, Any]:
        return self.to_graph() | {"tenantId": self.tenant_id, "hasMailbox": self.has_mailbox}


@dataclass(frozen=True)
class IssuedToken:
    value: str
    app: AppRegistration
    expires_at: datetime


class TokenError(Exception):
    """A token request Entra refuses: `status` and the OAuth error body Entra sends (AADSTS codes)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"{error}: AADSTS{code}: {description}")
        stamp = now()
        trace_id, correlation_id = new_guid(), new_guid()
        self.status = status
        self.body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: "
            f"{correlation_id} Timestamp: {stamp:%Y-%m-%d %H:%M:%S}Z",
            "error_codes": [code],
            "timestamp": f"{stamp:%Y-%m-%d %H:%M:%S}Z",
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }


@dataclass
class Subscription:
    id: str
    app: AppRegistration
    user_id: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: datetime
    latest_tls: str = "v1_2"

    @property
    def change_type(self) -> str:
        return ",".join(self.change_types)

    def live(self, at: datetime | None = None) -> bool:
        return self.expires_at > (at or now())

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app.client_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": format_instant(self.expires_at),
            "creatorId": self.app.service_principal_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
            "notificationQueryOptions": None,
            "notificationContentType": "application/json",
        }

    def notification(self, change: Change) -> dict[str, Any]:
        """One change notification item (notification_event_created.json), resource named by the user's GUID."""
        resource = f"Users/{change.user_id}/Events/{change.event_id}"
        return {
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": format_instant_ms(self.expires_at),
            "clientState": self.client_state,
            "changeType": change.change_type,
            "resource": resource,
            "tenantId": self.app.tenant_id,
            "resourceData": {
                "@odata.type": GRAPH_EVENT_TYPE,
                "@odata.id": resource,
                "@odata.etag": change.etag,
                "id": change.event_id,
            },
        }

    def lifecycle(self, event: str) -> dict[str, Any]:
        """One lifecycle notification item (lifecycle_*.json)."""
        return {
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": format_instant(self.expires_at),
            "tenantId": self.app.tenant_id,
            "clientState": self.client_state,
            "lifecycleEvent": event,
        }


@dataclass(frozen=True)
class SentMail:
    sender: str
    user_id: str
    message: dict[str, Any]
    save_to_sent_items: bool
    sent_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.sender,
            "userId": self.user_id,
            "message": self.message,
            "saveToSentItems": self.save_to_sent_items,
            "sentDateTime": format_instant(self.sent_at),
        }


class GraphState:
    """Everything the emulated tenant knows. One event loop uses it; nothing here blocks or awaits."""

    def __init__(self, *, default_tenant_id: str | None = None, delta_keep_per_user: int = 64) -> None:
        self.default_tenant_id = default_tenant_id or new_guid()
        self.apps: dict[str, AppRegistration] = {}
        self.users: dict[str, DirectoryUser] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.subscriptions: dict[str, Subscription] = {}
        # Indexes over `subscriptions`, so that a create, a notification or a purge does not scan every live
        # subscription (at 10,000 mailboxes the scans were half of the emulator's CPU): the live ones per mailbox
        # owner, and expiry times in a heap, where an entry whose subscription was renewed since is skipped.
        self._watching: dict[str, dict[str, Subscription]] = {}
        self._expiries: list[tuple[datetime, str]] = []
        self.sent_mail: list[SentMail] = []
        self.delta = DeltaStates(keep_per_user=delta_keep_per_user)
        self.groups = Groups()
        self._by_name: dict[str, str] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._store_id = os.urandom(16)
        self._change_counter = 0
        self._listeners: list[Callable[[Change], None]] = []

    # -- directory -----------------------------------------------------------------------------------------

    def add_app(
        self,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        display_name: str = "Presence bridge",
    ) -> AppRegistration:
        app = AppRegistration(
            tenant_id=(tenant_id or self.default_tenant_id).lower(),
            client_id=(client_id or new_guid()).lower(),
            client_secret=client_secret or random_token(30),
            display_name=display_name,
        )
        self.apps[app.client_id] = app
        return app

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
        if "@" not in user_principal_name:
            raise ValueError(f"a userPrincipalName looks like name@domain, not {user_principal_name!r}")
        if self.find_user(user_principal_name) is not None:
            raise ValueError(f"a user {user_principal_name!r} exists already")
        user = DirectoryUser(
            id=(user_id or new_guid()).lower(),
            user_principal_name=user_principal_name,
            display_name=display_name or _display_name(user_principal_name),
            mail=mail or user_principal_name,
            tenant_id=(tenant_id or self._only_tenant()).lower(),
            has_mailbox=has_mailbox,
            employee_id=employee_id,
        )
        self.users[user.id] = user
        self._by_name[user.user_principal_name.lower()] = user.id
        self._by_name[user.mail.lower()] = user.id
        if has_mailbox:
            owner = Owner(user.id, user.user_principal_name, user.display_name, user.mail)
            self.mailboxes[user.id] = Mailbox(owner, new_change_key=self.new_change_key, on_change=self._changed)
        return user

    def add_group(self, display_name: str, *, group_id: str | None = None) -> DirectoryGroup:
        return self.groups.add(display_name, tenant_id=self._only_tenant(), group_id=group_id)

    def grant(self, client_id: str, roles: Iterable[str]) -> AppRegistration:
        """Set the app's application permissions (admin consent given); tokens issued before keep their roles."""
        return self._replace_app(client_id, roles=frozenset(roles))

    def restrict_access(self, client_id: str, users: Iterable[str] | None) -> AppRegistration:
        """An application access policy: the app reaches only these users' mailboxes (None: lift the policy)."""
        scope = None if users is None else frozenset(self._user_id(user) for user in users)
        return self._replace_app(client_id, mailbox_scope=scope)

    def _replace_app(self, client_id: str, **changes: Any) -> AppRegistration:
        app = replace(self.apps[client_id.lower()], **changes)
        self.apps[app.client_id] = app
        return app

    def _user_id(self, key: str) -> str:
        user = self.find_user(key)
        if user is None:
            raise ValueError(f"no user {key!r}")
        return user.id

    def authorize(self, app: AppRegistration, route: str, method: str, user: DirectoryUser | None) -> None:
        """Graph's 403 when the token lacks the application permission for the call, or a policy keeps the app
        out of the mailbox (permissions: Microsoft's Graph permissions reference; the bodies: what Graph sends)."""
        needed = _NEEDED_ROLES.get((route, method))
        if needed is not None and not needed & app.roles:
            if route in _DIRECTORY_ROUTES:
                message = "Insufficient privileges to complete the operation."
                raise GraphError(403, "Authorization_RequestDenied", message)
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        # The policy is Exchange's, read when the call arrives (the current registration, not the token's copy).
        scope = self.apps[app.client_id].mailbox_scope if app.client_id in self.apps else None
        if route not in _DIRECTORY_ROUTES and user is not None and scope is not None and user.id not in scope:
            raise GraphError(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            )

    def find_user(self, key: str) -> DirectoryUser | None:
        """A user by object id or userPrincipalName (or mail), case-insensitively."""
        lowered = key.strip().lower()
        user = self.users.get(lowered)
        if user is None:
            user_id = self._by_name.get(lowered)
            user = self.users.get(user_id) if user_id else None
        return user

    def user_for(self, key: str, app: AppRegistration) -> DirectoryUser:
        user = self.find_user(key)
        if user is None or user.tenant_id != app.tenant_id:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
            )
        return user

    def mailbox_for(self, key: str, app: AppRegistration | None) -> Mailbox:
        """The calendar behind `/users/{key}/...`, or the 404 Graph answers for that user."""
        user = self.find_user(key)
        if user is None or (app is not None and user.tenant_id != app.tenant_id):
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
        mailbox = self.mailboxes.get(user.id)
        if mailbox is None:
            raise GraphError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return mailbox

    # -- tokens (Entra) ------------------------------------------------------------------------------------

    def issue_token(self, tenant: str, form: Mapping[str, str]) -> dict[str, Any]:
        """The client-credentials grant: Entra's answer, or `TokenError` with its AADSTS code."""
        tenant = tenant.lower()
        if not any(app.tenant_id == tenant for app in self.apps.values()):
            raise TokenError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                raise TokenError(
                    400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
                )
        if form["grant_type"] != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type .")
        client_id = form["client_id"].lower()
        app = self.apps.get(client_id)
        if app is None or app.tenant_id != tenant:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form['client_id']}' was not found in the directory '{tenant}'. This "
                "can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication request to the "
                "wrong tenant.",
            )
        scopes = form["scope"].split()
        if not scopes or not all(scope.endswith("/.default") for scope in scopes):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form['scope']} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        secret = form.get("client_secret")
        if not secret:
            raise TokenError(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        if secret != app.client_secret:
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        issued = now()
        token = IssuedToken(_jwt(app, issued), app, issued + timedelta(seconds=TOKEN_LIFETIME_S))
        self._tokens[token.value] = token
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": TOKEN_LIFETIME_S,
            "access_token": token.value,
        }

    def authenticate(self, authorization: str | None) -> AppRegistration:
        """The app behind `Authorization: Bearer ...`, or Graph's 401."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthenticated("Access token is empty.")
        token = self._tokens.get(value.strip())
        if token is None:
            raise _unauthenticated("Access token validation failure. Invalid audience.")
        if token.expires_at <= now():
            raise _unauthenticated("Lifetime validation failed, the token is expired.")
        if token.app.client_id not in self.apps:
            raise _unauthenticated("Access token validation failure. The application was removed.")
        return token.app

    def rotate_secret(self, client_id: str, secret: str | None = None) -> AppRegistration:
        """Give the app a new client secret, as an administrator does in Entra when one leaked: the old secret is
        refused from now on, and the tokens issued with it are revoked (the next call with one answers 401)."""
        app = self.apps[client_id.lower()]
        rotated = replace(app, client_secret=secret or random_token(30))
        self.apps[app.client_id] = rotated
        for value, token in list(self._tokens.items()):
            if token.app.client_id == app.client_id:
                self._tokens[value] = IssuedToken(token.value, rotated, now() - timedelta(seconds=1))
        return rotated

    def remove_user(self, key: str) -> tuple[DirectoryUser, list[Subscription]]:
        """Delete a user and their mailbox (someone left the company); returns the user and the subscriptions
        that watched the mailbox, which the caller removes with their lifecycle notification."""
        user = self.find_user(key)
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist.")
        del self.users[user.id]
        self.mailboxes.pop(user.id, None)
        self.groups.forget(user.id)
        for name in (user.user_principal_name.lower(), user.mail.lower()):
            self._by_name.pop(name, None)
        return user, list(self._watching.get(user.id, {}).values())

    def expire_tokens(self) -> None:
        """Make every issued token expired: the next call answers 401 and the client must fetch a new one."""
        for value, token in list(self._tokens.items()):
            self._tokens[value] = IssuedToken(token.value, token.app, now() - timedelta(seconds=1))

    # -- subscriptions -------------------------------------------------------------------------------------

    def subscription_draft(self, app: AppRegistration, body: Any) -> Subscription:
        """A checked, not yet stored, subscription; storing waits for the validation handshake."""
        if not isinstance(body, dict):
            raise _subscription_payload_error()
        for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise _subscription_payload_error()
        change_types = tuple(part.strip() for part in body["changeType"].split(","))
        if not change_types or any(part not in CHANGE_TYPES for part in change_types):
            raise GraphError(400, "InvalidRequest", f"Invalid 'changeType' attribute: '{body['changeType']}'.")
        notification_url = _url(body["notificationUrl"], "notificationUrl")
        lifecycle = body.get("lifecycleNotificationUrl")
        lifecycle_url = _url(lifecycle, "lifecycleNotificationUrl") if lifecycle else None
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
            raise GraphError(
                400, "InvalidRequest", f"The clientState must be a string of at most {MAX_CLIENT_STATE} characters."
            )
        match = _RESOURCE.match(body["resource"].strip())
        if match is None:
            raise GraphError(
                400,
                "ExtensionError",
                f"Operation: Create; Exception: [Status Code: BadRequest; Reason: Resource '{body['resource']}' "
                "is not supported; this emulator serves /users/{id}/events.]",
            )
        user = self.find_user(match["user"])
        if user is None or user.tenant_id != app.tenant_id or user.id not in self.mailboxes:
            raise GraphError(
                404,
                "ExtensionError",
                f"Operation: Create; Exception: [Status Code: NotFound; Reason: The requested user "
                f"'{match['user']}' is invalid.]",
            )
        return Subscription(
            id=new_guid(),
            app=app,
            user_id=user.id,
            resource=body["resource"],
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=_expiry(body["expirationDateTime"], "Create"),
            latest_tls=str(body.get("latestSupportedTlsVersion") or "v1_2"),
        )

    def conflicting(self, draft: Subscription) -> Subscription | None:
        """A live subscription of the same app for the same mailbox, URL and change types (Graph answers 409)."""
        self.purge_expired()
        for existing in self._watching.get(draft.user_id, {}).values():
            same = (
                existing.app.client_id == draft.app.client_id
                and existing.user_id == draft.user_id
                and existing.notification_url == draft.notification_url
                and set(existing.change_types) == set(draft.change_types)
            )
            if same:
                return existing
        return None

    def check_conflict(self, draft: Subscription) -> None:
        existing = self.conflicting(draft)
        if existing is not None:
            raise GraphError(
                409,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Conflict; Reason: A subscription with the same "
                f"resource, change type and notification URL exists already: {existing.id}.]",
            )

    def add_subscription(self, draft: Subscription) -> Subscription:
        self.check_conflict(draft)
        self.subscriptions[draft.id] = draft
        self._watching.setdefault(draft.user_id, {})[draft.id] = draft
        heapq.heappush(self._expiries, (draft.expires_at, draft.id))
        return draft

    def subscription(self, subscription_id: str, app: AppRegistration | None = None) -> Subscription:
        """A live subscription (of `app`, when given); expired ones are gone, as in Graph."""
        self.purge_expired()
        found = self.subscriptions.get(subscription_id.lower())
        if found is None or (app is not None and found.app.client_id != app.client_id):
            raise GraphError(404, "ResourceNotFound", f"The object '{subscription_id}' was not found.")
        return found

    def renew_subscription(self, subscription_id: str, app: AppRegistration, body: Any) -> Subscription:
        found = self.subscription(subscription_id, app)
        if not isinstance(body, dict) or not isinstance(body.get("expirationDateTime"), str):
            raise GraphError(400, "InvalidRequest", "expirationDateTime is required to renew a subscription.")
        self.set_expiry(found, _expiry(body["expirationDateTime"], "Update"))
        return found

    def set_expiry(self, subscription: Subscription, when: datetime) -> None:
        subscription.expires_at = when
        heapq.heappush(self._expiries, (when, subscription.id))

    def remove_subscription(self, subscription_id: str) -> Subscription | None:
        removed = self.subscriptions.pop(subscription_id.lower(), None)
        if removed is not None:
            self._watching[removed.user_id].pop(removed.id, None)
        return removed

    def live_subscriptions(self) -> list[Subscription]:
        self.purge_expired()
        return list(self.subscriptions.values())

    def subscriptions_for(self, change: Change) -> list[Subscription]:
        self.purge_expired()
        watching = self._watching.get(change.user_id, {}).values()
        return [subscription for subscription in watching if change.change_type in subscription.change_types]

    def purge_expired(self) -> list[Subscription]:
        moment = now()
        expired = []
        while self._expiries and self._expiries[0][0] <= moment:
            _, subscription_id = heapq.heappop(self._expiries)
            subscription = self.subscriptions.get(subscription_id)
            if subscription is not None and not subscription.live(moment):
                self.remove_subscription(subscription_id)
                expired.append(subscription)
        return expired

    # -- changes, mail, reset ------------------------------------------------------------------------------

    def on_change(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def new_change_key(self) -> str:
        self._change_counter += 1
        raw = _CHANGE_KEY_HEADER + self._store_id + self._change_counter.to_bytes(6, "big")
        return base64.b64encode(raw).decode("ascii")

    def record_mail(self, mailbox: Mailbox, body: Any) -> SentMail:
        if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
            raise GraphError(400, "ErrorInvalidRequest", "The request body must contain a message.")
        message = body["message"]
        recipients = [
            item
            for name in ("toRecipients", "ccRecipients", "bccRecipients")
            for item in (message.get(name) or [])
            if isinstance(item, dict)
        ]
        if not recipients:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
            )
        for item in recipients:
            address = (item.get("emailAddress") or {}).get("address")
            if not isinstance(address, str) or "@" not in address:
                raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
        mail = SentMail(
            sender=mailbox.owner.user_principal_name,
            user_id=mailbox.owner.id,
            message=message,
            save_to_sent_items=body.get("saveToSentItems", True) is not False,
            sent_at=now(),
        )
        self.sent_mail.append(mail)
        return mail

    def reset(self, *, keep_directory: bool = True) -> None:
        """Empty calendars, delta states, subscriptions and sent mail; the directory too unless kept."""
        self.subscriptions.clear()
        self._watching.clear()
        self._expiries.clear()
        self.sent_mail.clear()
        self.delta.clear()
        users = list(self.users.values())
        self.mailboxes.clear()
        self.users.clear()
        self._by_name.clear()
        if not keep_directory:
            self.groups = Groups()
            self.apps.clear()
            self._tokens.clear()
            return
        for user in users:
            self.add_user(
                user.user_principal_name,
                user.display_name,
                user_id=user.id,
                mail=user.mail,
                tenant_id=user.tenant_id,
                has_mailbox=user.has_mailbox,
                employee_id=user.employee_id,
            )

    def _changed(self, change: Change) -> None:
        for listener in self._listeners:
            listener(change)

    def _only_tenant(self) -> str:
        tenants = {app.tenant_id for app in self.apps.values()}
        return tenants.pop() if len(tenants) == 1 else self.default_tenant_id


def _jwt(app: AppRegistration, issued: datetime) -> str:
    """An access token shaped like Entra's (a JWT); only this emulator reads it, by looking it up."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "emulator"}
    stamp = int(issued.timestamp())
    claims = {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{app.tenant_id}/",
        "iat": stamp,
        "nbf": stamp,
        "exp": stamp + TOKEN_LIFETIME_S,
        "appid": app.client_id,
        "oid": app.service_principal_id,
        "roles": sorted(app.roles),
        "tid": app.tenant_id,
        "uti": random_token(12),
    }
    parts = [json.dumps(part, separators=(",", ":")).encode() for part in (header, claims)]
    return ".".join(b64url(part).rstrip("=") for part in [*parts, os.urandom(64)])


def _unauthenticated(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message, headers={"WWW-Authenticate": 'Bearer realm=""'})


def _subscription_payload_error() -> GraphError:
    return GraphError(
        400,
        "InvalidRequest",
        "Could not process subscription creation payload. Are all property names spelled and camelCased "
        "properly? Also are the dateTimeOffset properties in a valid internet date-time format?",
    )


def _url(value: Any, name: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise GraphError(400, "InvalidRequest", f"The {name} '{value}' is not an absolute http(s) URL.")
    return str(value)


def _expiry(text: str, operation: str) -> datetime:
    expires = parse_instant(text)
    moment = now()
    if expires <= moment:
        raise GraphError(
            400,
            "ExtensionError",
            f"Operation: {operation}; Exception: [Status Code: BadRequest; Reason: Subscription expiration date "
            "must be in the future.]",
        )
    if expires > moment + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
        raise GraphError(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future.",
        )
    return expires


def _display_name(user_principal_name: str) -> str:
    local = user_principal_name.split("@", 1)[0]
    return " ".join(part[:1].upper() + part[1:] for part in re.split(r"[._-]+", local) if part) or local
