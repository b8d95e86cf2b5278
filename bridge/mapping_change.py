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
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from bridge.config import SyncConfig
from bridge.domain import ChangeType, MirrorItem
from bridge.errors import UserError
from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.store.mapping_state import FILE_EDIT, applied_mapping, held_mapping, hold_mapping, record_applied
from bridge.store.mirror import load_mirror
from bridge.sync import PlannedChange, plan_remap
from bridge.templates import LiveMapping, TemplateMapping, load_mapping_text, mapping_digest, write_mapping_file

log = logging.getLogger(__name__)

EXAMPLES = 3  # per kind of change and mailbox
FIRST_START = "the bridge's first start"
_KINDS = {ChangeType.CREATED: "created", ChangeType.UPDATED: "updated", ChangeType.DELETED: "withdrawn"}


@dataclass(frozen=True, slots=True)
class PreviewedChange:
    """One change the workforce system would be told of: which appointment, shown as what before and after."""

    kind: str  # "created", "updated" or "withdrawn"
    item_id: str
    start: datetime
    end: datetime
    subject: str | None  # as the workforce system sees it: None for a private appointment
    before: str | None  # the template it is shown as now (None: not shown)
    after: str | None  # the template it would be shown as (None: withdrawn)

    def line(self) -> str:
        when = f"{self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M}Z"
        subject = repr(self.subject) if self.subject is not None else "(subject not shown)"
        if self.kind == "created":
            return f"{when} {subject} shown as {self.after}"
        if self.kind == "withdrawn":
            return f"{when} {subject} no longer shown (was {self.before})"
        if self.before != self.after:
            return f"{when} {subject} {self.before} -> {self.after}"
        return f"{when} {subject} {self.after}, shown differently"


@dataclass(frozen=True, slots=True)
class MailboxPreview:
    address: str
    shown: int  # appointments the workforce system shows for the mailbox now
    created: int
    updated: int
    withdrawn: int
    listed: tuple[PreviewedChange, ...] = ()  # the first changes, in the order they would be emitted

    @property
    def examples(self) -> dict[str, tuple[str, ...]]:
        """Up to EXAMPLES lines per kind of change ("created" / "updated" / "withdrawn")."""
        found: dict[str, list[str]] = {}
        for change in self.listed:
            lines = found.setdefault(change.kind, [])
            if len(lines) < EXAMPLES:
                lines.append(change.line())
        return {kind: tuple(lines) for kind, lines in found.items()}

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


def preview_remap(session: Session, mapping: TemplateMapping, *, listed: int = 3 * EXAMPLES) -> MappingPreview:
    """What re-mapping every active mailbox with `mapping` would tell the workforce system; nothing is written.

    Each mailbox lists its first `listed` changes, and the first EXAMPLES of each kind (for the examples).
    """
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
            previews.append(_mailbox_preview(address, mirror, plan.changes, listed))
    return MappingPreview(tuple(previews))


def _mailbox_preview(
    address: str, mirror: dict[str, MirrorItem], changes: tuple[PlannedChange, ...], listed: int
) -> MailboxPreview:
    counts = dict.fromkeys(_KINDS.values(), 0)
    kept: list[PreviewedChange] = []
    for change in changes:
        kind = _KINDS[change.change_type]
        counts[kind] += 1
        if len(kept) < listed or counts[kind] <= EXAMPLES:
            kept.append(_previewed(kind, change, mirror[change.entry.item_id].template))
    return MailboxPreview(
        address,
        shown=sum(1 for item in mirror.values() if item.template is not None),
        created=counts["created"],
        updated=counts["updated"],
        withdrawn=counts["withdrawn"],
        listed=tuple(kept),
    )


def _previewed(kind: str, change: PlannedChange, shown_as: str | None) -> PreviewedChange:
    entry = change.entry
    after = None if change.change_type is ChangeType.DELETED else entry.template
    before = entry.template if change.change_type is ChangeType.DELETED else shown_as
    return PreviewedChange(kind, entry.item_id, entry.start, entry.end, entry.subject, before, after)


class EditedMeanwhile(UserError):
    """The mapping file changed after an administrator's edit began: the edit was not written."""


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
            await self._db.run(lambda session: record_applied(session, digest, text, self._clock(), FIRST_START))
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
            digest = self._live.latest_file[0]
            held = await self._db.run(held_mapping)
            by = FILE_EDIT
            if held is not None and held.digest == digest:
                if not held.approved:
                    return
                log.warning("applying the held template mapping change %s: it was confirmed", digest[:12])
                by = f"{FILE_EDIT}, confirmed by {held.approved_by}"
            else:
                preview = await self._db.run(lambda session: preview_remap(session, new))
                if preview.is_mass_withdrawal(self._sync):
                    await self._hold(digest, preview)
                    return
            await self._put_in_force(new, by)

    async def install(self, text: str, by: str, *, based_on: str) -> int:
        """Make `text` the mapping file (atomically) and put it in force at once; returns the changes emitted.

        For an administrator who saw what it would change (the admin page's preview): that counts as the
        confirmation a change withdrawing too much would otherwise wait for. `based_on` is the digest of the file
        the edit started from: if the file changed since, nothing is written (EditedMeanwhile), so that an edit
        made meanwhile is neither lost nor applied unseen. An invalid `text` raises UserError with every problem.
        """
        async with self._deciding:
            path = self._live.path.resolve()
            now_on_disk = await asyncio.to_thread(path.read_bytes)
            if mapping_digest(now_on_disk) != based_on:
                raise EditedMeanwhile(f"{path} changed since this edit began", ["look at it again, then redo the edit"])
            await asyncio.to_thread(write_mapping_file, path, text.encode())
            self._live.reload()
            log.warning("template mapping %s replaced by %s", path, by)
            return await self._put_in_force(self._live.latest, by)

    async def _put_in_force(self, new: TemplateMapping, by: str) -> int:
        digest, text = self._live.latest_file
        self._live.put_in_force(new)
        emitted = await self._remap(new)
        await self._db.run(lambda session: record_applied(session, digest, text, self._clock(), by, emitted))
        log.info("template mapping changed: %d changes emitted", emitted)
        return emitted

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


def not_editable(templates: Path | None, live: LiveMapping | None) -> str | None:
    """Why the mapping in force cannot be edited while the bridge runs (the admin API, the admin page), if so.

    `templates` is the configuration's `templates:` setting; `live` the file the running bridge watches.
    """
    if templates is None:
        return (
            "the shipped default mapping is in force: point `templates:` in the configuration at a copy of "
            "templates_map/default.yaml and restart the bridge, then edit that file"
        )
    if live is None:
        return "this bridge was started without a mapping file it watches"
    target = live.path.resolve()
    if not (os.access(target, os.W_OK) and os.access(target.parent, os.W_OK)):
        return f"the bridge may not write {target} or its directory"
    return None
