"""What a change of the template mapping would do, seen before it is applied (docs/templates.md).

The preview re-maps each active mailbox's mirror with the candidate mapping, through the same pure planner the
re-map uses (`plan_remap`), and counts what the workforce system would be told: created, updated, withdrawn.
A change that would withdraw the mass-delete share of what a mailbox (or the whole bridge) shows is held until
an administrator confirms it; the sync engine's guard against a calendar that suddenly reads as empty, applied
to a mapping that suddenly shows nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from bridge.config import SyncConfig
from bridge.domain import ChangeType, MirrorItem
from bridge.errors import UserError
from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.store.mapping_state import applied_mapping, held_mapping, hold_mapping, record_applied
from bridge.store.mirror import load_mirror
from bridge.sync import PlannedChange, plan_remap
from bridge.templates import LiveMapping, TemplateMapping, load_mapping_text

log = logging.getLogger(__name__)

EXAMPLES = 3  # per kind of change and mailbox
_KINDS = {ChangeType.CREATED: "created", ChangeType.UPDATED: "updated", ChangeType.DELETED: "withdrawn"}


@dataclass(frozen=True, slots=True)
class MailboxPreview:
    address: str
    shown: int  # appointments the workforce system shows for the mailbox now
    created: int
    updated: int
    withdrawn: int
    examples: dict[str, tuple[str, ...]]  # "created" / "updated" / "withdrawn" → up to EXAMPLES lines

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "shown": self.shown,
            "created": self.created,
            "updated": self.updated,
            "withdrawn": self.withdrawn,
            "examples": {kind: list(lines) for kind, lines in self.examples.items()},
        }


@dataclass(frozen=True, slots=True)
class MappingPreview:
    mailboxes: tuple[MailboxPreview, ...]  # those whose shown appointments would change

    @property
    def shown(self) -> int:
        return sum(mailbox.shown for mailbox in self.mailboxes)

    @property
    def withdrawn(self) -> int:
        return sum(mailbox.withdrawn for mailbox in self.mailboxes)

    @property
    def changes(self) -> int:
        return sum(mailbox.created + mailbox.updated + mailbox.withdrawn for mailbox in self.mailboxes)

    def is_mass_withdrawal(self, sync: SyncConfig) -> bool:
        """Whether applying it at once could empty what people see: then it waits for a confirmation."""
        each = any(sync.is_mass_delete(mailbox.withdrawn, mailbox.shown) for mailbox in self.mailboxes)
        return each or sync.is_mass_delete(self.withdrawn, self.shown)

    def as_json(self) -> dict[str, Any]:
        return {
            "created": sum(mailbox.created for mailbox in self.mailboxes),
            "updated": sum(mailbox.updated for mailbox in self.mailboxes),
            "withdrawn": self.withdrawn,
            "mailboxes": [mailbox.as_json() for mailbox in self.mailboxes],
        }


def preview_remap(session: Session, mapping: TemplateMapping) -> MappingPreview:
    """What re-mapping every active mailbox with `mapping` would tell the workforce system; nothing is written."""
    query = (
        select(MailboxRow.id, MailboxRow.address)
        .where(MailboxRow.status == MailboxStatus.ACTIVE)
        .order_by(col(MailboxRow.address))
    )
    previews = []
    for mailbox_id, address in session.exec(query).all():
        assert mailbox_id is not None
        mirror = load_mirror(session, mailbox_id)
        plan = plan_remap(mirror, mapping)
        if plan.changes:
            previews.append(_mailbox_preview(address, mirror, plan.changes))
    return MappingPreview(tuple(previews))


def _mailbox_preview(address: str, mirror: dict[str, MirrorItem], changes: tuple[PlannedChange, ...]) -> MailboxPreview:
    counts = dict.fromkeys(_KINDS.values(), 0)
    examples: dict[str, list[str]] = {kind: [] for kind in _KINDS.values()}
    for change in changes:
        kind = _KINDS[change.change_type]
        counts[kind] += 1
        if len(examples[kind]) < EXAMPLES:
            examples[kind].append(_example(change, mirror[change.entry.item_id].template))
    return MailboxPreview(
        address,
        shown=sum(1 for item in mirror.values() if item.template is not None),
        created=counts["created"],
        updated=counts["updated"],
        withdrawn=counts["withdrawn"],
        examples={kind: tuple(lines) for kind, lines in examples.items() if lines},
    )


def _example(change: PlannedChange, shown_as: str | None) -> str:
    entry = change.entry
    when = f"{entry.start:%Y-%m-%d %H:%M}-{entry.end:%H:%M}Z"
    subject = repr(entry.subject) if entry.subject is not None else "(subject not shown)"
    if change.change_type is ChangeType.CREATED:
        return f"{when} {subject} shown as {entry.template}"
    if change.change_type is ChangeType.DELETED:
        return f"{when} {subject} no longer shown (was {entry.template})"
    if shown_as != entry.template:
        return f"{when} {subject} {shown_as} -> {entry.template}"
    return f"{when} {subject} {entry.template}, shown differently"


class MappingChanges:
    """Puts a changed mapping in force, or holds it: the running bridge's side of a change of mapping.

    `remap` re-maps every active mailbox with the mapping now in force and returns how many changes it emitted
    (MailboxSync.remap). The file watcher and the admin API both call `changed`; a confirmation recorded in the
    database (`presence-bridge templates apply`, the admin API) is seen at the watcher's next poll.
    """

    def __init__(
        self,
        db: Database,
        live: LiveMapping,
        sync: SyncConfig,
        remap: Callable[[TemplateMapping], Awaitable[int]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._live = live
        self._sync = sync
        self._remap = remap
        self._clock = clock
        self._deciding = asyncio.Lock()

    async def start(self) -> None:
        """Compare the file with the mapping the mirror reflects: an edit made while the bridge was stopped is a
        change like any other (held if it would withdraw too much), not something a restart applies silently."""
        applied = await self._db.run(applied_mapping)
        digest, text = self._live.latest_file
        if applied is None:
            await self._db.run(lambda session: record_applied(session, digest, text, self._clock()))
            return
        if applied[0] == digest:
            return
        try:
            before = load_mapping_text(applied[1], self._live.path.name)
        except UserError as exc:  # a mapping this version no longer accepts: nothing to compare the file with
            log.warning("the mapping applied before cannot be read (%s); applying %s", exc.summary, self._live.path)
            await self._db.run(lambda session: record_applied(session, digest, text, self._clock()))
            return
        self._live.put_in_force(before)
        log.info("template mapping %s changed while the bridge was stopped", self._live.path)
        await self.changed(before, self._live.latest)

    async def changed(self, old: TemplateMapping, new: TemplateMapping) -> None:
        """`new` was read from the file: apply it, or hold it when it would withdraw too much unconfirmed."""
        async with self._deciding:
            if new is not self._live.latest:
                return  # an older call; the file changed again since
            digest, text = self._live.latest_file
            held = await self._db.run(held_mapping)
            if held is not None and held.digest == digest:
                if not held.approved:
                    return
                log.warning("applying the held template mapping change %s: it was confirmed", digest[:12])
            else:
                preview = await self._db.run(lambda session: preview_remap(session, new))
                if preview.is_mass_withdrawal(self._sync):
                    await self._hold(digest, preview)
                    return
            self._live.put_in_force(new)
            emitted = await self._remap(new)
            await self._db.run(lambda session: record_applied(session, digest, text, self._clock()))
            log.info("template mapping changed: %d changes emitted", emitted)

    async def _hold(self, digest: str, preview: MappingPreview) -> None:
        now = self._clock()
        if await self._db.run(lambda session: hold_mapping(session, digest, preview.as_json(), now)):
            log.warning(
                "template mapping change %s held: it would withdraw %d of the %d appointments shown; see it with "
                "`presence-bridge templates diff`, apply it with `presence-bridge templates apply`",
                digest[:12],
                preview.withdrawn,
                preview.shown,
            )
