"""Entra ID groups in the Graph emulator, read as Graph answers `GET /groups/{id}/transitiveMembers`.

What the emulator follows (Microsoft's "List group transitive members", v1.0, and "Paging Microsoft Graph data";
docs/emulators.md cites them):

- a group's members are users and other groups; the transitive list is flat and holds every nested member once,
  the nested groups themselves included, each a directoryObject with its `@odata.type` (`#microsoft.graph.user`,
  `#microsoft.graph.group`);
- an app without a permission to read users (User.Read.All, User.ReadBasic.All, Directory.Read.All) still gets
  the user members, but with limited information: `@odata.type` and `id`, every other property null;
- pages hold 100 objects by default; `$top` takes 1 to 999 and anything else is refused with 400
  `Request_UnsupportedQuery`; the next page is an `@odata.nextLink` with an opaque `$skiptoken`;
- an unknown group id answers 404 `Request_ResourceNotFound`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from emulators.graph_common import GraphError, new_guid

DEFAULT_PAGE = 100
MAX_PAGE = 999
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
# Application permissions that let an app read the users a directoryObject collection holds.
READ_USERS = frozenset({"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"})
# Graph's default property set for a user when the request has no $select (Microsoft's user resource page).
_USER_DEFAULTS = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
_GROUP_DEFAULTS = ("displayName", "description", "groupTypes", "mail", "mailEnabled", "securityEnabled")


@dataclass
class DirectoryGroup:
    id: str
    display_name: str
    tenant_id: str
    mail: str | None = None
    # Object ids of the direct members (users and groups), in the order they were added.
    members: dict[str, None] = field(default_factory=dict)

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "description": None,
            "groupTypes": [],
            "mail": self.mail,
            "mailEnabled": self.mail is not None,
            "securityEnabled": True,
        }

    def to_json(self) -> dict[str, Any]:
        return self.to_graph() | {"tenantId": self.tenant_id, "members": list(self.members)}


class Groups:
    """The tenant's groups; members are referred to by object id (a user's or a group's)."""

    def __init__(self) -> None:
        self.groups: dict[str, DirectoryGroup] = {}

    def add(
        self, display_name: str, *, tenant_id: str, group_id: str | None = None, mail: str | None = None
    ) -> DirectoryGroup:
        group = DirectoryGroup((group_id or new_guid()).lower(), display_name, tenant_id, mail)
        if group.id in self.groups:
            raise ValueError(f"a group {group.id!r} exists already")
        self.groups[group.id] = group
        return group

    def find(self, group_id: str, tenant_id: str) -> DirectoryGroup:
        group = self.groups.get(group_id.strip().lower())
        if group is None or group.tenant_id != tenant_id:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{group_id}' does not exist or one of its queried reference-property objects are not "
                "present.",
            )
        return group

    def add_members(self, group_id: str, member_ids: Iterable[str]) -> DirectoryGroup:
        group = self._group(group_id)
        for member_id in member_ids:
            group.members[member_id.lower()] = None
        return group

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> DirectoryGroup:
        group = self._group(group_id)
        for member_id in member_ids:
            group.members.pop(member_id.lower(), None)
        return group

    def forget(self, object_id: str) -> None:
        """A deleted user (or group) leaves every group it was in."""
        for group in self.groups.values():
            group.members.pop(object_id, None)
        self.groups.pop(object_id, None)

    def transitive(self, group_id: str) -> list[str]:
        """Every member of the group and of the groups nested in it, each once, nested groups included; a group
        nested in itself (Entra allows cycles through other groups) ends the walk there."""
        found: dict[str, None] = {}
        pending = [group_id]
        visited = {group_id}
        while pending:
            for member_id in self.groups[pending.pop(0)].members:
                if member_id in self.groups and member_id not in visited:
                    visited.add(member_id)
                    pending.append(member_id)
                if member_id != group_id:
                    found.setdefault(member_id, None)
        return list(found)

    def _group(self, group_id: str) -> DirectoryGroup:
        group = self.groups.get(group_id.lower())
        if group is None:
            raise ValueError(f"no group {group_id!r}")
        return group


def page_size(top: str | None) -> int:
    if top is None:
        return DEFAULT_PAGE
    try:
        size = int(top)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.",
        )
    return size


def skip_token(offset: int) -> str:
    # Opaque to clients, as Graph's is; the emulator only needs the offset back.
    return base64.urlsafe_b64encode(f"emulator-skip:{offset}".encode()).decode().rstrip("=")


def skip_offset(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix == "emulator-skip" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise GraphError(400, "Request_BadRequest", "The specified page token value has expired or is invalid.")


def render_member(graph: dict[str, Any], kind: str, fields: list[str] | None, *, readable: bool) -> dict[str, Any]:
    """One directoryObject of the transitive list: its type, id and the selected (or default) properties; an
    object the app may not read has those properties null (Graph's "limited information")."""
    wanted = fields or list(_USER_DEFAULTS if kind == USER_TYPE else _GROUP_DEFAULTS)
    body: dict[str, Any] = {"@odata.type": kind, "id": graph["id"]}
    for name in wanted:
        if name != "id":
            body[name] = graph.get(name) if readable else None
    return body
