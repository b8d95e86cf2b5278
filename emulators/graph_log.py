"""Reading the Graph emulator's request log (`GraphEmulator.stats()["log"]`, the control API's /stats).

One sync of a mailbox reads its delta pages one after another; two delta reads of one mailbox under way at once
mean two syncs of it at once (two bridge instances that both think they hold the mailbox). The tests and the
scale-out bench look for them here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any


def concurrent_reads(log: Iterable[Mapping[str, Any]], route: str = "delta") -> dict[str, int]:
    """Per user (mailbox), how many of its `route` requests began before the one before them had been answered;
    users read only one at a time are left out. Each entry's `time` is when it was answered, `ms` how long it took.
    """
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for entry in log:
        if entry.get("route") == route and entry.get("user") is not None:
            answered = _instant(str(entry["time"]))
            spans[str(entry["user"])].append((answered - timedelta(milliseconds=float(entry["ms"])), answered))
    found = {}
    for user, reads in spans.items():
        reads.sort()
        overlaps = sum(1 for earlier, later in itertools.pairwise(reads) if later[0] < earlier[1])
        if overlaps:
            found[user] = overlaps
    return found


def users_read(log: Iterable[Mapping[str, Any]], route: str = "delta") -> set[str]:
    """The users (mailboxes) the log shows `route` requests for."""
    return {str(entry["user"]) for entry in log if entry.get("route") == route and entry.get("user") is not None}


def _instant(text: str) -> datetime:
    # Graph's form, 2026-11-20T09:00:00.0000000Z: seven digits of fraction, more than fromisoformat takes.
    stamp, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{stamp}.{(fraction + '000000')[:6]}+00:00")
