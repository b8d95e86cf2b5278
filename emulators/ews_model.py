"""The on-premises organisation the EWS emulator serves: mailboxes, their folders, service accounts and what
the calendars' changes mean for SyncFolderItems.

Every mailbox's calendar is a graph_events.Mailbox (the same store, recurrence and change-key rules as the
Graph emulator); this module adds what EWS has on top: folder ids, a per-mailbox change log that sync states
point into, and the deleted-items move that `DeleteType="MoveToDeletedItems"` and Outlook's delete make.

A sync state names a position in the mailbox's change log. The log keeps, per stored item (single item or
series master; occurrences and exceptions are changes of their master, as in Exchange's ICS), when it was
created, last changed, and whether it is gone, so a sync from any position reports each item once: created
since the position -> Create, otherwise Update or Delete.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from emulators.ews_xml import EwsError
from emulators.graph_common import now
from emulators.graph_events import Change
from emulators.graph_events import Mailbox as Calendar
from emulators.graph_events import Owner as GraphOwner

# Folders every mailbox has; exchangelib asks for root and calendar when an Account is used.
FOLDERS = {
    "root": ("Folder", "", "Top of Information Store"),
    "msgfolderroot": ("Folder", "IPF.Note", "Top of Information Store"),
    "calendar": ("CalendarFolder", "IPF.Appointment", "Calendar"),
    "deleteditems": ("Folder", "IPF.Note", "Deleted Items"),
    "inbox": ("Folder", "IPF.Note", "Inbox"),
    "sentitems": ("Folder", "IPF.Note", "Sent Items"),
    "drafts": ("Folder", "IPF.Note", "Drafts"),
}


@dataclass
class ServiceAccount:
    username: str
    password: str
    impersonation: bool = True
    # Full access to every mailbox without impersonation (Exchange's FullAccess permission, delegate mode).
    full_access: bool = False


@dataclass
class ItemLog:
    created: int
    changed: int
    deleted: bool = False


@dataclass(frozen=True)
class ItemEvent:
    """One change of a stored item, as subscriptions hear it."""

    kind: str  # Created, Modified, Deleted, Moved
    item_id: str
    change_key: str
    folder: str  # distinguished name of the folder it is (or was) in
    at: datetime
    old_item_id: str | None = None
    old_folder: str | None = None


@dataclass
class SentMail:
    sender: str
    kind: str  # Message, MeetingRequest, MeetingCancellation
    subject: str
    body: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    sent_at: datetime = field(default_factory=now)

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.sender,
            "kind": self.kind,
            "subject": self.subject,
            "body": self.body,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "sentAt": self.sent_at.isoformat(),
        }


class EwsMailbox:
    """One user's mailbox: its calendar (the Graph model), folder ids and the change log for sync."""

    def __init__(self, address: str, display_name: str, *, new_change_key: Callable[[], str]) -> None:
        self.address = address
        self.display_name = display_name
        self.present = True
        self.folders = {name: _new_id("AQMkAD") for name in FOLDERS}
        self.folder_change_keys = {name: new_change_key() for name in FOLDERS}
        self.seq = 0
        self.log: dict[str, ItemLog] = {}
        # Why the next delete happens: HardDelete/SoftDelete report DeletedEvent, a move MovedEvent.
        self.delete_type = "MoveToDeletedItems"
        self.listeners: list[Callable[[EwsMailbox, ItemEvent], None]] = []
        self.calendar = Calendar(
            GraphOwner(address, address, display_name, address),
            new_change_key=new_change_key,
            on_change=self._changed,
        )

    def folder_name(self, folder_id: str) -> str | None:
        for name, known in self.folders.items():
            if known == folder_id:
                return name
        return None

    def folder_ref(self, name: str) -> tuple[str, str]:
        return self.folders[name], self.folder_change_keys[name]

    def _changed(self, change: Change) -> None:
        self.seq += 1
        entry = self.log.get(change.event_id)
        if change.change_type == "created" or entry is None:
            entry = self.log[change.event_id] = ItemLog(self.seq, self.seq)
        entry.changed = self.seq
        entry.deleted = change.change_type == "deleted"
        change_key = change.etag[3:-1]
        if change.change_type == "created":
            event = ItemEvent("Created", change.event_id, change_key, "calendar", now())
        elif change.change_type == "updated":
            event = ItemEvent("Modified", change.event_id, change_key, "calendar", now())
        elif self.delete_type == "MoveToDeletedItems":
            event = ItemEvent(
                "Moved", _new_id("AAMkAD"), change_key, "deleteditems", now(), change.event_id, "calendar"
            )
        else:
            event = ItemEvent("Deleted", change.event_id, change_key, "calendar", now())
        for listener in list(self.listeners):
            listener(self, event)

    # -- sync ----------------------------------------------------------------------------------------------

    def sync_state(self, seq: int) -> str:
        return base64.b64encode(json.dumps({"m": self.address.lower(), "s": seq}).encode()).decode("ascii")

    def parse_sync_state(self, state: str | None) -> int:
        if not state:
            return 0
        try:
            decoded = json.loads(base64.b64decode(state.encode("ascii"), validate=True))
            seq = int(decoded["s"])
            mailbox = str(decoded["m"])
        except (ValueError, KeyError, TypeError, UnicodeEncodeError):
            raise EwsError(
                "ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid."
            ) from None
        if mailbox != self.address.lower() or not 0 <= seq <= self.seq:
            raise EwsError("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid.")
        return seq

    def changes_since(self, seq: int, limit: int) -> tuple[list[tuple[str, str]], int, bool]:
        """(kind, item id) for Create/Update/Delete after `seq`, the position after them, whether that is all."""
        pending = sorted(
            ((entry.changed, item_id, entry) for item_id, entry in self.log.items() if entry.changed > seq),
            key=lambda row: row[0],
        )
        # An item created and deleted since the position never existed for this client.
        pending = [row for row in pending if not (row[2].deleted and row[2].created > seq)]
        page = pending[:limit]
        complete = len(page) == len(pending)
        position = self.seq if complete else page[-1][0]
        changes = []
        for _, item_id, entry in page:
            kind = "Delete" if entry.deleted else "Create" if entry.created > seq else "Update"
            changes.append((kind, item_id))
        return changes, position, complete


_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    # Exchange ids are base64 of an entry id; a counter keeps them unique within the process.
    raw = os.urandom(24) + next(_counter).to_bytes(8, "big")
    return prefix + base64.b64encode(raw).decode("ascii")


def new_moved_id() -> str:
    return _new_id("AAMkAD")


def change_key_factory() -> Callable[[], str]:
    """Change keys as Exchange writes them: base64, `DwAAABYAAAA` for calendar items, unique on every write."""
    counter = itertools.count(1)

    def new_change_key() -> str:
        return "DwAAABYAAAA" + base64.b64encode(os.urandom(12) + next(counter).to_bytes(4, "big")).decode("ascii")

    return new_change_key


class Organisation:
    """The Exchange organisation: mailboxes by primary SMTP address, the accounts that may log in, sent mail."""

    def __init__(self) -> None:
        self.new_change_key = change_key_factory()
        self.mailboxes: dict[str, EwsMailbox] = {}
        self.accounts: dict[str, ServiceAccount] = {}
        self.sent_mail: list[SentMail] = []
        self.on_new_mailbox: list[Callable[[EwsMailbox], None]] = []

    def add_mailbox(self, address: str, display_name: str | None = None) -> EwsMailbox:
        key = address.lower()
        existing = self.mailboxes.get(key)
        if existing is not None:
            existing.present = True
            return existing
        mailbox = EwsMailbox(address, display_name or address.partition("@")[0], new_change_key=self.new_change_key)
        self.mailboxes[key] = mailbox
        for hook in self.on_new_mailbox:
            hook(mailbox)
        return mailbox

    def mailbox(self, address: str) -> EwsMailbox | None:
        """A present mailbox by SMTP address (case-insensitive); a removed one is as good as unknown."""
        found = self.mailboxes.get(address.strip().lower())
        return found if found is not None and found.present else None

    def add_account(self, account: ServiceAccount) -> ServiceAccount:
        self.accounts[account.username.lower()] = account
        return account

    def account(self, username: str) -> ServiceAccount | None:
        return self.accounts.get(username.strip().lower())
