"""The database part of `presence-bridge check`: can the bridge open it, and is its schema this version's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.errors import UserError
from bridge.store.db import Database, parse_url


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    """`connected` false is a connection failure; connected but not `current` is a schema to upgrade; a SQLite
    file that is `missing` is fine: the first `run` creates it."""

    connected: bool
    current: bool
    summary: str
    problems: tuple[str, ...] = ()
    missing: bool = False

    @property
    def ok(self) -> bool:
        return self.missing or (self.connected and self.current)


def check_database(
    url: str, *, schema: str | None = None, upgrade: str = "presence-bridge db upgrade"
) -> DatabaseCheck:
    """Open the database read-only in effect (nothing is created or migrated) and report where its schema stands."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        # Checked before the handle is made: making it creates the file (empty, private).
        # An administrator checks a configuration before its first start: nothing to fix yet.
        created_by = f"not created yet: `presence-bridge run` (or `{upgrade}`) creates it"
        return DatabaseCheck(False, False, f"{parsed.database}: {created_by}", missing=True)
    database = Database(url, schema=schema)
    try:
        state = database.revisions()
    except UserError as exc:
        return DatabaseCheck(False, False, exc.summary, exc.problems)
    finally:
        database.close()
    if state.up_to_date:
        return DatabaseCheck(True, True, f"connected, {state.describe()}")
    fix = "run a version of the bridge that knows it" if not state.known else f"run `{upgrade}`"
    return DatabaseCheck(True, False, f"connected, {state.describe()}", (fix,))
