"""Finished relay commands are pruned after `workforce.retention`; a create or state command is kept while the
appointment it made is not over (`command.needed_until`).

Revision ID: 0011_rest
Revises: 0010_tz
Create Date: 2026-11-30

Commands finished before this revision get `needed_until` from their stored request, as the relay sets it for new
ones (an update named by a create's id moves it to the later end), so retention never drops the id of an
appointment that is still ahead. `ix_command_finished` lets the pruning find the oldest finished commands without
reading the table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011_rest"
down_revision: str | None = "0010_tz"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_COMMAND = sa.table(
    "command",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("needed_until", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("command") as batch:
        batch.add_column(sa.Column("needed_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_command_finished", ["finished_at"], unique=False)
    connection = op.get_bind()
    done = connection.execute(
        sa.select(_COMMAND.c.id, _COMMAND.c.kind, _COMMAND.c.payload)
        .where(_COMMAND.c.status == "done", _COMMAND.c.kind.in_(["create", "state", "update"]))
        .order_by(_COMMAND.c.finished_at)
    ).all()
    needed: dict[str, datetime] = {}
    for command_id, kind, payload in done:
        made = _needed_until(kind, payload)
        if made is not None:
            needed[command_id] = made
        elif kind == "update":
            _extend(needed, payload)
    for command_id, until in needed.items():
        connection.execute(sa.update(_COMMAND).where(_COMMAND.c.id == command_id).values(needed_until=until))


def _needed_until(kind: str, payload: dict[str, Any]) -> datetime | None:
    """`bridge.store.commands.needed_until` as it reads at this revision. A migration keeps its own copy: it must
    upgrade a database the same way whatever later versions of the rule become."""
    if kind == "state":
        made = payload["plan"]
    elif kind == "create":
        made = payload.get("resolved", payload["request"])  # a command stored before zones has only the request
    else:
        return None
    end = datetime.fromisoformat(made["end"])
    end = end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)  # the oldest requests were all UTC
    until = (made.get("recurrence") or {}).get("until")
    if until:
        end = max(end, datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(), tzinfo=UTC))
    return end


def _extend(needed: dict[str, datetime], payload: dict[str, Any]) -> None:
    """An update named by a create's id that moved the appointment's end later (what `extend_need` records now)."""
    request = payload.get("resolved", payload["request"])
    target, end = request.get("target"), request.get("end")
    if target in needed and isinstance(end, str):
        moved = datetime.fromisoformat(end)
        if moved.tzinfo is not None and moved > needed[target]:
            needed[target] = moved


def downgrade() -> None:
    with op.batch_alter_table("command") as batch:
        batch.drop_index("ix_command_finished")
        batch.drop_column("needed_until")
