"""Change → workforce latency, end to end, and the Graph requests the bridge spends per change.

Starts the Graph emulator with 20 ms of simulated network latency on every Graph answer, the workforce receiver
and the bridge (default timing, SQLite) on loopback; then people change their calendars (creates, moves and
deletes over 20 mailboxes at a steady rate) and the time from each change in Exchange to its arrival at the
workforce system is measured. Graph requests are counted by the emulator (token and subscription upkeep
excluded: they do not grow with changes).

Run: .venv/bin/python bench/e2e.py [--changes 300] [--rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.demo import SECRET, local_config
from bridge.emulators.graph import GraphEmulator
from bridge.emulators.workforce import WorkforceReceiver
from bridge.service import Service

MAILBOXES = 20
LATENCY_MS = 20
PER_CHANGE_ROUTES = {"delta", "event", "events", "calendarView"}


def _at(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


async def measure(changes: int, rate: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-bench-"))
    graph = GraphEmulator(ca_file=folder / "ca.pem")
    await graph.start()
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    people = [(f"user{n}@contoso.com", f"User {n}", f"E{n:04d}") for n in range(MAILBOXES)]
    service = Service(local_config(folder, graph, workforce_url, people))
    await service.start()
    try:
        while len(graph.subscriptions()) < MAILBOXES:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the catch-up syncs after subscribing
        graph.set_latency(LATENCY_MS)
        graph.clear_stats()
        sent: dict[str, float] = {}
        arrived: dict[str, float] = {}
        watcher = asyncio.create_task(_watch(workforce, arrived))
        made: list[tuple[str, str]] = []
        item_of: dict[str, str] = {}  # change key → the event it changed
        rng = random.Random(1)
        tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        for index in range(changes):
            address = people[index % MAILBOXES][0]
            start = tomorrow + timedelta(days=rng.randint(0, 20), hours=rng.randint(8, 16))
            key = f"change-{index}"
            sent[key] = time.perf_counter()
            if made and rng.random() < 0.3:
                who, item = made.pop(rng.randrange(len(made)))
                graph.update_event_as_outlook(
                    who, item, {"subject": key, "start": _at(start), "end": _at(start + timedelta(hours=1))}
                )
                made.append((who, item))
                item_of[key] = item
            else:
                event = {"subject": key, "start": _at(start), "end": _at(start + timedelta(hours=1)), "showAs": "busy"}
                made.append((address, str(graph.create_event_as_outlook(address, event)["id"])))
                item_of[key] = made[-1][1]
            await asyncio.sleep(1 / rate)
        deadline = time.perf_counter() + 30
        while len(arrived) < changes and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
        stats = graph.stats()
    finally:
        await service.stop()
        await workforce.stop()
        await graph.stop()
    latencies = [arrived[key] - sent[key] for key in sent if key in arrived]
    # A change overtaken by a later change to the same event before the bridge read it is seen only in its
    # final state (one delta read covers both): coalesced, not lost.
    order = list(sent)
    coalesced = [
        key for key in sent
        if key not in arrived and any(item_of[later] == item_of[key] for later in order[order.index(key) + 1 :])
    ]  # fmt: skip
    lost = [key for key in sent if key not in arrived and key not in coalesced]
    requests = sum(count for route, count in stats["byRoute"].items() if route in PER_CHANGE_ROUTES)
    return {
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(statistics.quantiles(latencies, n=100)[98], 3),
        "graph_requests_per_change": round(requests / changes, 2),
        "changes": changes,
        "arrived": len(latencies),
        "coalesced": len(coalesced),
        "lost": len(lost),
        "requests_by_route": {route: count for route, count in stats["byRoute"].items() if count},
    }


async def _watch(workforce: WorkforceReceiver, arrived: dict[str, float]) -> None:
    """Timestamp each change as it reaches the workforce system (the subject names the change)."""
    seen = 0
    while True:
        for change in workforce.changes[seen:]:
            arrived.setdefault(change["appointment"].get("subject", ""), time.perf_counter())
        seen = len(workforce.changes)
        await asyncio.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0, help="changes per second")
    args = parser.parse_args()
    result = asyncio.run(measure(args.changes, args.rate))
    print(
        f"{result['arrived']} of {result['changes']} changes arrived, {result['coalesced']} coalesced into a later "
        f"change of the same event, {result['lost']} lost; Graph latency {LATENCY_MS} ms per answer"
    )
    print(f"change → workforce: p50 {result['latency_p50_s']} s, p99 {result['latency_p99_s']} s")
    print(f"Graph requests per change: {result['graph_requests_per_change']} ({result['requests_by_route']})")
    print(
        json.dumps(
            {key: result[key] for key in ("latency_p50_s", "latency_p99_s", "graph_requests_per_change", "lost")}
        )
    )


if __name__ == "__main__":
    main()
