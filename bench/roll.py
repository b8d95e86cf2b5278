"""A person's change while every mailbox rolls its window, and what a mailbox costs at rest.

Starts the Graph emulator (20 ms per Graph answer once the mailboxes are enrolled), the workforce receiver and the
bridge (default timing, SQLite) on loopback, in this process; N mailboxes with E events each. After the first
sync it moves the bridge's clock a day on (the window rolls for every mailbox: a new delta round each), and while
the roll runs, people change their calendars at a steady rate; each change is timed from its scheduled time to
its arrival at the workforce system. Then the clock moves past the reconcile interval (every mailbox reconciles)
and the Graph requests of each phase are counted per mailbox (the emulator's count; tokens excluded; the roll's
include the reads of the changes made during it). Database bytes are the SQLite file's pages in use, before and
after pruning every delivered change. `rss_growth_kb` is this process's peak RSS growth from just before the
bridge starts (the emulator's calendars are seeded before): it holds the bridge's fixed start-up cost, so the
cost per mailbox is the difference between runs of two sizes.

Run: .venv/bin/python bench/roll.py [--mailboxes 300] [--events 10] [--rate 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import load_config
from bridge.retention import Retention
from bridge.service import Service
from emulators.graph import GraphEmulator
from emulators.harness import SECRET, local_config_file
from emulators.workforce import WorkforceReceiver

LATENCY_MS = 20
READ_ROUTES = {"delta", "event", "events", "calendarView"}


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _at(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _pending(service: Service) -> int:
    with service.db.session() as session:
        return int(
            session.connection()
            .exec_driver_sql(
                "SELECT count(*) FROM mailbox WHERE status = 'active' AND dirty_generation > synced_generation"
            )
            .scalar_one()
        )


async def _drained(service: Service, within: float) -> float:
    started = time.perf_counter()
    while _pending(service) and time.perf_counter() - started < within:
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


def _reads(graph: GraphEmulator) -> int:
    return sum(count for route, count in graph.stats()["byRoute"].items() if route in READ_ROUTES)


def _database_bytes(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        page_size, pages, free = (
            connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_size", "page_count", "freelist_count")
        )
    return int(page_size * (pages - free))


async def measure(mailboxes: int, events: int, rate: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-roll-"))
    graph = GraphEmulator(ca_file=folder / "ca.pem")
    await graph.start()
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    people = [(f"user{n}@contoso.com", f"User {n}", f"E{n:05d}") for n in range(mailboxes)]
    config = load_config(local_config_file(folder, graph, workforce_url, people))
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    for address, _, _ in people:
        for index in range(events):
            start = tomorrow + timedelta(days=index * 3, hours=9)
            fields = {"subject": f"seed {index}", "start": _at(start), "end": _at(start + timedelta(hours=1))}
            graph.create_event_as_outlook(address, fields | {"showAs": "busy"})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clock = Clock()
    service = Service(config, clock=clock)
    started = time.perf_counter()
    await service.start()
    try:
        while len(graph.subscriptions()) < mailboxes:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        first_sync_s = time.perf_counter() - started + await _drained(service, 600)
        graph.set_latency(LATENCY_MS)
        graph.clear_stats()
        received = len(workforce.changes)

        clock.offset = timedelta(days=1)
        arrived: dict[str, float] = {}
        watcher = asyncio.create_task(_watch(workforce, received, arrived))
        roll_started = time.perf_counter()
        rolling = await service.sync.mark_due()
        made = await _change_during_roll(graph, service, [p[0] for p in people], rate, tomorrow + timedelta(days=1))
        await _drained(service, 600)
        roll_s = time.perf_counter() - roll_started
        deadline = time.perf_counter() + 30
        while any(subject not in arrived for subject, _ in made) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
        roll_reads = _reads(graph)

        graph.clear_stats()
        clock.offset = timedelta(days=1, hours=7)  # past the 6-hour reconcile interval: every mailbox reconciles
        reconciling = await service.sync.mark_due()
        reconcile_s = await _drained(service, 600)
        reconcile_reads = _reads(graph)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        database = _database_bytes(folder / "bridge.db")
        # What stays once retention has pruned the delivered changes (a retention of 0 here, 7 days in service).
        await Retention(service.db, timedelta(0), delivered_only=True).prune()
        at_rest = _database_bytes(folder / "bridge.db")
    finally:
        await service.stop()
        await workforce.stop()
        await graph.stop()
    latencies = [arrived[subject] - scheduled for subject, scheduled in made if subject in arrived]
    return {
        "mailboxes": mailboxes,
        "events_per_mailbox": events,
        "first_sync_s": round(first_sync_s, 1),
        "rolled": rolling,
        "roll_s": round(roll_s, 1),
        "offered_changes_per_s": rate,
        "changes_during_roll": len(made),
        "notified_p50_s_during_roll": round(statistics.median(latencies), 3) if latencies else None,
        "notified_p99_s_during_roll": round(statistics.quantiles(latencies, n=100)[98], 3)
        if len(latencies) > 1
        else None,
        "lost": len(made) - len(latencies),
        "graph_reads_per_mailbox_roll": round(roll_reads / mailboxes, 2),
        "reconciled": reconciling,
        "reconcile_s": round(reconcile_s, 1),
        "graph_reads_per_mailbox_reconcile": round(reconcile_reads / mailboxes, 2),
        "database_bytes_per_mailbox": database // mailboxes,
        "database_bytes_per_mailbox_after_retention": at_rest // mailboxes,
        "rss_growth_kb": rss_after - rss_before,
    }


async def _change_during_roll(
    graph: GraphEmulator, service: Service, addresses: list[str], rate: float, day: datetime
) -> list[tuple[str, float]]:
    """A change in a random mailbox every 1/rate s, by the schedule, while mailboxes are still rolling."""
    rng = random.Random(1)
    made: list[tuple[str, float]] = []
    first = time.perf_counter()
    while _pending(service) > len(addresses) // 10:
        scheduled = first + len(made) / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        subject = f"during roll {len(made)}"
        start = day + timedelta(hours=rng.randint(8, 16))
        fields = {"subject": subject, "start": _at(start), "end": _at(start + timedelta(hours=1)), "showAs": "busy"}
        graph.create_event_as_outlook(addresses[rng.randrange(len(addresses))], fields)
        made.append((subject, scheduled))
    return made


async def _watch(workforce: WorkforceReceiver, skip: int, arrived: dict[str, float]) -> None:
    """Timestamp each change as it reaches the workforce system, by its subject."""
    seen = skip
    while True:
        for change in workforce.changes[seen:]:
            arrived.setdefault(change["appointment"].get("subject", ""), time.perf_counter())
        seen = len(workforce.changes)
        await asyncio.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=300)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.0, help="changes per second during the roll")
    args = parser.parse_args()
    result = asyncio.run(measure(args.mailboxes, args.events, args.rate))
    print(json.dumps({**result, "errors": result["lost"]}))


if __name__ == "__main__":
    main()
