"""The bridge's state: tables, the database handle and its migrations (SQLite by default, PostgreSQL)."""

from bridge.domain import ChangeType
from bridge.store.db import Database, lock_outbox, parse_url
from bridge.store.models import (
    CommandKind,
    CommandRow,
    CommandStatus,
    DeltaStateRow,
    FeedHorizonRow,
    MailboxRow,
    MailboxStatus,
    MirrorRow,
    OutboxRow,
    SourceKind,
    SourceRow,
    SourceStatus,
    SubscriptionRow,
)

__all__ = [
    "ChangeType",
    "CommandKind",
    "CommandRow",
    "CommandStatus",
    "Database",
    "DeltaStateRow",
    "FeedHorizonRow",
    "MailboxRow",
    "MailboxStatus",
    "MirrorRow",
    "OutboxRow",
    "SourceKind",
    "SourceRow",
    "SourceStatus",
    "SubscriptionRow",
    "lock_outbox",
    "parse_url",
]
