"""Where a database's schema stands against this version's migrations, and what to tell the person running it.

Only `presence-bridge db upgrade` and `run` migrate (docs/storage.md): every other command reads a database as it
finds it, so one behind the code is reported with the command that brings it up, never upgraded on the side.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.script import ScriptDirectory

from bridge.errors import UserError


@dataclass(frozen=True, slots=True)
class Revisions:
    """The database's revision (None: never upgraded), the newest this version knows, and those in between."""

    current: str | None
    head: str
    pending: tuple[str, ...]
    # False when the database was upgraded by a newer version of the bridge: this one cannot read it.
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if not self.known:
            return f"at revision {self.current}, newer than this version (it knows up to {self.head})"
        if self.up_to_date:
            return f"at revision {self.current} (current)"
        at = f"at revision {self.current}" if self.current else "empty"
        return f"{at}; {len(self.pending)} pending: {', '.join(self.pending)} (head {self.head})"


def revisions(script: ScriptDirectory, current: str | None) -> Revisions:
    head = script.get_current_head()
    assert head is not None, "the bridge ships at least one migration"
    known = current is None or current in {rev.revision for rev in script.walk_revisions()}
    if not known:
        return Revisions(current, head, (), known=False)
    # walk_revisions goes from head down to (and excluding) `current`.
    pending = tuple(rev.revision for rev in script.walk_revisions(base="base", head="heads"))
    below = pending.index(current) if current is not None else len(pending)
    return Revisions(current, head, tuple(reversed(pending[:below])), known=True)


def refuse_newer(state: Revisions) -> None:
    """Older code must not run on (or migrate) a schema it does not know."""
    if not state.known:
        raise UserError(
            f"database is at revision {state.current}; this version knows up to {state.head}",
            ["run the version of the bridge that upgraded it, or a newer one"],
        )


def require_current(state: Revisions, shown_url: str, upgrade: str) -> None:
    """A command that does not migrate needs the schema exactly at this version's head."""
    refuse_newer(state)
    if not state.up_to_date:
        raise UserError(
            f"database {shown_url} is {state.describe()}",
            [f"bring it to this version's schema with `{upgrade}`, then run this command again"],
        )
