"""How the bridge stands, for an administrator: one screen (`presence-bridge status`) and the same as JSON
(`GET /api/v1/admin/status`), both from one read of the database (bridge/store/summary.py).

This is the detailed view, behind a config file or an admin token: reasons and errors appear as recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bridge.domain import iso_utc
from bridge.progress import progress_json, progress_line
from bridge.store.models import MailboxStatus
from bridge.store.summary import Summary

# Rows of each list shown: the few that matter first, never the whole table of a large deployment.
DETAILS = 10


NOT_READ = "not read yet"


def status_json(summary: Summary) -> dict[str, Any]:
    backlog, held = summary.backlog, summary.held_mapping
    return {
        "at": iso_utc(summary.at),
        "sources": [
            {
                "name": source.name,
                "kind": source.kind,
                "status": source.status,
                "reason": source.reason,
                "since": iso_utc(source.since),
            }
            for source in summary.sources
        ],
        "mailboxes": {
            "by_source": {
                source.name: {
                    status.value: summary.mailboxes.get((source.name, status.value), 0) for status in MailboxStatus
                }
                for source in summary.sources
            },
            "attention": [
                {
                    "address": issue.address,
                    "source": issue.source,
                    "status": issue.status,
                    "reason": issue.reason,
                    "since": iso_utc(issue.since),
                }
                for issue in summary.attention
            ],
            # Per source, how many mailboxes are in each zone ("not read yet": the source's default applies).
            "time_zones": {source.name: dict(_zones(summary, source.name)) for source in summary.sources},
        },
        "subscriptions": [
            {
                "mailbox": due.mailbox,
                "source": due.source,
                "expires_at": iso_utc(due.expires_at),
                "reauthorize_requested": due.reauthorize_requested,
            }
            for due in summary.expiring
        ],
        "backlog": {
            "undelivered": backlog.undelivered,
            "oldest": None if backlog.oldest is None else iso_utc(backlog.oldest),
            "oldest_age_s": round(backlog.oldest_age_s(summary.at), 3),
            "failing": backlog.failing,
        },
        "sync_progress": progress_json(summary.progress),
        "delivery_errors": [
            {
                "mailbox": error.mailbox,
                "attempts": error.attempts,
                "error": error.error,
                "next_attempt_at": iso_utc(error.next_attempt_at),
            }
            for error in summary.delivery_errors
        ],
        "instances": [
            {"name": name, "syncing": syncing, "delivering": delivering}
            for name, (syncing, delivering) in summary.instances.items()
        ],
        "mapping_change_held": None
        if held is None
        else {
            "since": iso_utc(held.since),
            "withdrawn": held.preview.get("withdrawn", 0),
            "approved": held.approved,
        },
    }


def _zones(summary: Summary, source: str) -> list[tuple[str, int]]:
    """A source's mailboxes by zone, named zones first, then those not read yet."""
    counts = [(zone, count) for (name, zone), count in summary.time_zones.items() if name == source]
    return [
        (zone or NOT_READ, count) for zone, count in sorted(counts, key=lambda item: (item[0] is None, item[0] or ""))
    ]


def status_text(summary: Summary, database: str) -> str:
    now = summary.at
    lines = [f"presence-bridge status at {moment_text(now)} (database {database})", "", "sources"]
    for source in summary.sources:
        reason = f": {source.reason}" if source.reason else ""
        lines.append(
            f"  {source.name:<16} {source.kind:<6} {source.status:<12} since {moment_text(source.since)}{reason}"
        )
    lines += ["", "mailboxes"]
    for source in summary.sources:
        counts = ", ".join(
            f"{summary.mailboxes.get((source.name, status.value), 0)} {status.value}" for status in MailboxStatus
        )
        lines.append(f"  {source.name:<16} {counts}")
        zones = ", ".join(f"{count} {zone}" for zone, count in _zones(summary, source.name))
        if zones:
            lines.append(f"  {'':<16} time zones: {zones}")
    for issue in summary.attention:
        lines.append(f"  {issue.address}: {issue.status} since {moment_text(issue.since)}: {issue.reason or '-'}")
    lines += ["", "subscriptions expiring soonest"]
    for due in summary.expiring:
        note = "; reauthorization requested" if due.reauthorize_requested else ""
        expires = f"{moment_text(due.expires_at)} ({span_text(due.expires_at - now)})"
        lines.append(f"  {due.mailbox:<32} {due.source:<12} expires {expires}{note}")
    if not summary.expiring:
        lines.append("  (none)")
    lines += ["", "sync", f"  {'up to date' if summary.progress is None else progress_line(summary.progress)}"]
    backlog = summary.backlog
    oldest = "" if backlog.oldest is None else f", oldest {span_text(now - backlog.oldest)} old"
    lines += ["", "delivery backlog", f"  {backlog.undelivered} undelivered{oldest}; {backlog.failing} failing"]
    lines += ["", "last delivery errors"]
    for error in summary.delivery_errors:
        lines.append(
            f"  {error.mailbox}: {error.attempts} attempts, next {moment_text(error.next_attempt_at)}: {error.error}"
        )
    if not summary.delivery_errors:
        lines.append("  (none)")
    lines += ["", "instances holding mailboxes now (syncing, delivering)"]
    for name, (syncing, delivering) in summary.instances.items():
        lines.append(f"  {name:<40} {syncing} syncing, {delivering} delivering")
    if not summary.instances:
        lines.append("  (none)")
    held = summary.held_mapping
    if held is not None:
        withdrawn = held.preview.get("withdrawn", 0)
        state = "confirmed, being applied" if held.approved else "see `presence-bridge templates diff`, then apply"
        lines += [
            "",
            "template mapping",
            f"  a change is held since {moment_text(held.since)}: it would withdraw {withdrawn} appointments; {state}",
        ]
    return "\n".join(lines)


def moment_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def span_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{minutes} min {seconds} s" if minutes else f"{sign}{seconds} s"
