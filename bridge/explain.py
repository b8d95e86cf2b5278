"""Why the workforce system sees a mirrored appointment the way it does (the admin page's Explain, docs/admin.md).

Nothing here decides anything: it reports the decision the mapping makes (`TemplateMapping.decide`, the one
`map` applies when the engine syncs), whether the appointment is inside the mailbox's window (`Window.overlaps`,
as the planner checks it), and what the workforce system was sent for it (the outbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from bridge.domain import Appointment, FreeBusy, MirrorItem, Window, iso_utc
from bridge.store import MailboxRow
from bridge.store.mirror import load_mirror
from bridge.store.outbox import SentChange, changes_for_item
from bridge.store.work import find_mailbox
from bridge.templates import Decision, Outcome, Rule, TemplateMapping

SENT_SHOWN = 50  # the newest changes listed for one appointment


@dataclass(frozen=True, slots=True)
class Explanation:
    """One mirrored appointment of a mailbox: what the mapping decides for it, and why, and what was sent."""

    address: str
    appointment: Appointment
    decision: Decision
    window: Window
    ignore_prefix: str
    days_ahead: int
    shown_as: str | None  # the template the workforce system was last told (the mirror's record); None: not shown
    sent: tuple[SentChange, ...]

    @property
    def in_window(self) -> bool:
        return self.window.overlaps(self.appointment.start, self.appointment.end)

    @property
    def verdict(self) -> str:
        """ "shown", "shown without subject", "hidden" or "left out" (outside the window)."""
        return self.decision.outcome.value if self.in_window else "left out"

    @property
    def reasons(self) -> tuple[str, ...]:
        """The rules that led to the verdict, one sentence each, in the order the bridge applies them."""
        reasons = [_window_reason(self.appointment, self.window, self.days_ahead)]
        reasons.append(_decision_reason(self.decision, self.appointment, self.ignore_prefix))
        if self.in_window and self.shown_as != self.decision.template:
            told = f"shown as {self.shown_as}" if self.shown_as else "not shown"
            reasons.append(
                f"the workforce system was last told it is {told}: the mirror was made with another mapping (a "
                "change of mapping held for confirmation, or a re-map not finished yet)"
            )
        return tuple(reasons)


def _window_reason(appointment: Appointment, window: Window, days_ahead: int) -> str:
    span = f"[{iso_utc(window.start)}, {iso_utc(window.end)}) (days_ahead: {days_ahead})"
    if window.overlaps(appointment.start, appointment.end):
        return f"it is inside the window {span}"
    if appointment.end <= window.start:
        return f"left out: it ended before the window {span} began; it leaves the mirror at the next sync"
    return f"left out: it starts at or after the end of the window {span}"


def _decision_reason(decision: Decision, appointment: Appointment, ignore_prefix: str) -> str:
    state = decision.free_busy.value
    if decision.rule is Rule.IGNORE_PREFIX:
        # A private appointment's subject is not quoted: the admin page keeps it as private as the workforce does.
        subject = "its subject" if appointment.private else f"its subject {appointment.subject!r}"
        return (
            f"hidden: {subject} starts with the ignore character {ignore_prefix!r} (leading spaces skipped); this "
            "rule comes first, so it holds for private appointments too"
        )
    if decision.rule is Rule.FREE:
        return "hidden: its free/busy state is free, which is never shown"
    if decision.rule is Rule.NO_TEMPLATE:
        if decision.free_busy is FreeBusy.UNKNOWN:
            return "hidden: Exchange reports no free/busy state for it (unknown), which has no template"
        return f"hidden: its free/busy state {state} has no template under `show`"
    if decision.outcome is Outcome.SHOWN_WITHOUT_SUBJECT:
        return (
            f"shown as {decision.template} ({state} → {decision.template} under `show`) without its subject: "
            "it is private"
        )
    return f"shown as {decision.template}: its free/busy state {state} → {decision.template} under `show`"


def explain(
    session: Session, address: str, item_id: str, mapping: TemplateMapping, now: datetime
) -> Explanation | None:
    """The explanation for one mirrored appointment of a mailbox; None when the bridge mirrors no such thing."""
    mailbox = find_mailbox(session, address)
    if mailbox is None or mailbox.id is None:
        return None
    item = load_mirror(session, mailbox.id, [item_id]).get(item_id)
    if item is None:
        return None
    return _explanation(mailbox.address, item, mapping, now, changes_for_item(session, mailbox.id, item_id, SENT_SHOWN))


def _explanation(
    address: str, item: MirrorItem, mapping: TemplateMapping, now: datetime, sent: list[SentChange]
) -> Explanation:
    appointment = item.appointment
    return Explanation(
        address=address,
        appointment=appointment,
        decision=mapping.decide(appointment.subject, appointment.free_busy, private=appointment.private),
        window=mapping.window(now),
        ignore_prefix=mapping.ignore_prefix,
        days_ahead=mapping.days_ahead,
        shown_as=item.template,
        sent=tuple(sent),
    )


@dataclass(frozen=True, slots=True)
class Listed:
    """A mirrored appointment as the Explain page lists it to pick from."""

    appointment: Appointment
    verdict: str


def mirrored(session: Session, address: str, mapping: TemplateMapping, now: datetime) -> list[Listed] | None:
    """A mailbox's mirrored appointments by start, each with its verdict; None for a mailbox the bridge lacks."""
    mailbox = find_mailbox(session, address)
    if mailbox is None or mailbox.id is None:
        return None
    items = sorted(load_mirror(session, mailbox.id).values(), key=lambda i: (i.appointment.start, i.item_id))
    return [Listed(item.appointment, _explanation(mailbox.address, item, mapping, now, []).verdict) for item in items]


def mailbox_addresses(session: Session) -> list[str]:
    return list(session.exec(select(MailboxRow.address).order_by(col(MailboxRow.address))).all())
