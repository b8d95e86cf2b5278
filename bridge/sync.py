"""The sync engine's core: compare what Exchange reported with the mirror and plan what to write and emit.

Pure: no database, no network. The caller reads the mirror, asks a source for a delta, calls `plan_delta` (or
`plan_remap` after the mapping changed) and commits the plan's mirror writes, changes and the new delta token in
one transaction (DESIGN §3.3). Replaying the same delta against the same mirror plans the same result, so a crash
before the commit costs nothing but the repeat.

A change is emitted only when what the workforce system sees changes (the mapped entry's content hash), not when
Exchange merely bumped a change key: spurious updates die here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from bridge.domain import Appointment, ChangeType, DeltaResult, MirrorItem, PresenceEntry, RelayWrites, Window
from bridge.templates import TemplateMapping

NO_RELAY_WRITES = RelayWrites()


@dataclass(frozen=True, slots=True)
class PlannedChange:
    change_type: ChangeType
    entry: PresenceEntry


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """Mirror rows to write and to drop, and the changes to emit, in the order they are to be sequenced."""

    put: tuple[MirrorItem, ...]
    drop: tuple[str, ...]
    changes: tuple[PlannedChange, ...]
    # Instances that left the calendar in this plan (aged-out ones not counted), and how many were mirrored:
    # the mass-delete guard compares the two.
    removed: int
    mirrored: int

    @property
    def empty(self) -> bool:
        return not (self.put or self.drop or self.changes)


def plan_delta(
    mirror: Mapping[str, MirrorItem],
    delta: DeltaResult,
    mapping: TemplateMapping,
    window: Window,
    relay: RelayWrites = NO_RELAY_WRITES,
    *,
    mirrored: int | None = None,
) -> SyncPlan:
    """What a delta read means for the mirror and the workforce system.

    Instances that end before the window starts have aged out: they leave the mirror silently (the workforce
    system keeps its history). Instances outside the window otherwise, `@removed` ones, and, after a full round,
    mirrored instances the round did not report are removed and, if they were shown, emitted as deleted.

    The relay's own writes are not news to the workforce system that asked for them (`relay`): an instance with
    the change key a relay write produced, or carrying the transaction id of a create still in flight, enters
    the mirror silently; instances the relay is writing, or wrote after this read began, are left to the relay
    (the read may hold an older state of them than the mirror).

    Outside a full round `mirror` need only hold the instances the delta names; `mirrored` then says how many
    the mailbox has in all (for the mass-delete guard).
    """
    incoming: dict[str, Appointment] = {}
    gone: dict[str, bool] = {}  # item id → whether it left the calendar (False: it merely aged out)
    for appointment in delta.upserts:
        if window.overlaps(appointment.start, appointment.end):
            incoming[appointment.item_id] = appointment
            gone.pop(appointment.item_id, None)
        else:
            # Aged out only if what was mirrored had ended before the window: an appointment a person moved from
            # inside the window into the past is gone from what the workforce system must show.
            old = mirror.get(appointment.item_id)
            gone[appointment.item_id] = old is not None and old.appointment.end > window.start
    for item_id in delta.removed:
        if item_id not in incoming:
            gone[item_id] = True
    if delta.full_round:
        for item_id, item in mirror.items():
            if item_id not in incoming and item_id not in gone:
                gone[item_id] = item.appointment.end > window.start
    builder = _PlanBuilder(mirror, mapping, relay, mirrored=mirrored)
    for item_id, left in gone.items():
        builder.remove(item_id, left=left)
    for appointment in sorted(incoming.values(), key=lambda a: (a.start, a.item_id)):
        builder.upsert(appointment)
    return builder.build()


def plan_remap(mirror: Mapping[str, MirrorItem], mapping: TemplateMapping) -> SyncPlan:
    """After the mapping changed: re-map every mirrored instance and emit only the resulting differences."""
    builder = _PlanBuilder(mirror, mapping)
    for item in sorted(mirror.values(), key=lambda i: (i.appointment.start, i.item_id)):
        builder.upsert(item.appointment)
    return builder.build()


def plan_window(mirror: Mapping[str, MirrorItem], window: Window) -> SyncPlan:
    """Drop instances that ended before the (rolled) window starts, silently."""
    aged = [item_id for item_id, item in mirror.items() if item.appointment.end <= window.start]
    return SyncPlan((), tuple(aged), (), 0, len(mirror))


def last_shown(item: MirrorItem, mapping: TemplateMapping) -> PresenceEntry | None:
    """The entry the workforce system holds for a mirrored instance, rebuilt from the mirror."""
    if item.template is None:
        return None
    appointment = item.appointment
    entry = mapping.map(appointment)
    subject = entry.subject if entry is not None else (None if appointment.private else appointment.subject)
    return PresenceEntry(
        item_id=appointment.item_id,
        template=item.template,
        free_busy=appointment.free_busy,
        start=appointment.start,
        end=appointment.end,
        all_day=appointment.all_day,
        subject=subject,
    )


class _PlanBuilder:
    def __init__(
        self,
        mirror: Mapping[str, MirrorItem],
        mapping: TemplateMapping,
        relay: RelayWrites = NO_RELAY_WRITES,
        *,
        mirrored: int | None = None,
    ) -> None:
        self._mirror = mirror
        self._mapping = mapping
        self._relay = relay
        self._mirrored = len(mirror) if mirrored is None else mirrored
        self._put: list[MirrorItem] = []
        self._drop: list[str] = []
        self._changes: list[PlannedChange] = []
        self._removed = 0

    def remove(self, item_id: str, *, left: bool) -> None:
        old = self._mirror.get(item_id)
        if old is None:
            return  # Graph also reports removals of instances the bridge never mirrored
        if self._relay.busy_with(item_id, old.appointment.series_id):
            return
        self._drop.append(item_id)
        if not left:
            return
        self._removed += 1
        shown = last_shown(old, self._mapping)
        if shown is not None:
            self._changes.append(PlannedChange(ChangeType.DELETED, shown))

    def upsert(self, appointment: Appointment) -> None:
        if self._relay.busy_with(appointment.item_id, appointment.series_id):
            return
        old = self._mirror.get(appointment.item_id)
        echo = self._relay.wrote(appointment) or (old is None and self._relay.creating(appointment))
        # Delta reads carry the transaction id but not the extended property: the bridge's mark is kept from the
        # mirror, or found through the create that carried that transaction id.
        bridge_ref = appointment.bridge_ref or (old and old.appointment.bridge_ref) or self._relay.ref(appointment)
        if bridge_ref != appointment.bridge_ref or appointment.transaction_id is not None:
            # A copy only when something changes: `replace` was a third of planning an appointment.
            appointment = replace(appointment, bridge_ref=bridge_ref, transaction_id=None)
        item, entry = self._mapping.mirror_item(appointment)
        if old is not None and old == item:
            return
        self._put.append(item)
        if echo:
            return
        if old is None or old.template is None:
            if entry is not None:
                self._changes.append(PlannedChange(ChangeType.CREATED, entry))
        elif entry is None:
            shown = last_shown(old, self._mapping)
            if shown is not None:
                self._changes.append(PlannedChange(ChangeType.DELETED, shown))
        elif old.shown_hash != item.shown_hash:
            self._changes.append(PlannedChange(ChangeType.UPDATED, entry))

    def build(self) -> SyncPlan:
        return SyncPlan(tuple(self._put), tuple(self._drop), tuple(self._changes), self._removed, self._mirrored)


def apply_to_mirror(mirror: Mapping[str, MirrorItem], plan: SyncPlan) -> dict[str, MirrorItem]:
    """The mirror as it is after `plan` commits (what the store does, as a value; used by tests and replays)."""
    result = dict(mirror)
    for item_id in plan.drop:
        result.pop(item_id, None)
    result.update((item.item_id, item) for item in plan.put)
    return result


def shown_entries(mirror: Iterable[MirrorItem], mapping: TemplateMapping) -> list[PresenceEntry]:
    """What the workforce system currently shows for a mailbox, as entries (for the timeline)."""
    entries = (last_shown(item, mapping) for item in mirror)
    return [entry for entry in entries if entry is not None]
