"""Change → workforce latency, end to end, and the Graph requests the bridge spends per change.

Starts the Graph emulator with 20 ms of simulated network latency on every Graph answer, the workforce receiver
and the bridge (default timing, SQLite) on loopback; then people change their calendars (creates, moves and
deletes over 20 mailboxes at a steady rate, each due at a fixed time and made then, late rather than never) and
the time from each change's scheduled time to its arrival at the workforce system is measured. A change the bridge
read together with a later change of the same event is carried by that later change (one delta read sees only
the final state; a delete carries every earlier change of its event): it counts as arrived when that later change
arrived, and as lost when neither did. Graph requests are counted by the emulator (token and subscription upkeep
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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import load_config
from bridge.service import Service
from emulators.graph import GraphEmulator
from emulators.harness import SECRET, local_config_file
from emulators.workforce import WorkforceReceiver

MAILBOXES = 20
LATENCY_MS = 20
PER_CHANGE_ROUTES = {"delta", "event", "events", "calendarView"}


def _at(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


@dataclass
class Change:
    kind: str  # "create", "update" or "delete"
    address: str
    event: str  # the Graph event id, which the workforce change carries as appointment.id
    scheduled: float
    made: float = 0.0

    def key(self, index: int) -> tuple[str, str]:
        """What the workforce change that shows it carries: a delete its event, others their own subject."""
        return ("deleted", self.event) if self.kind == "delete" else ("shown", f"change-{index}")


async def measure(changes: int, rate: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-bench-"))
    graph = GraphEmulator(ca_file=folder / "ca.pem")
    await graph.start()
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    people = [(f"user{n}@contoso.com", f"User {n}", f"E{n:04d}") for n in range(MAILBOXES)]
    service = Service(load_config(local_config_file(folder, graph, workforce_url, people)))
    await service.start()
    try:
        while len(graph.subscriptions()) < MAILBOXES:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the catch-up syncs after subscribing
        graph.set_latency(LATENCY_MS)
        graph.clear_stats()
        arrived: dict[tuple[str, str], float] = {}
        watcher = asyncio.create_task(_watch(workforce, arrived))
        made = await _change_calendars(graph, [address for address, _, _ in people], changes, rate, arrived)
        deadline = time.perf_counter() + 30
        while _lost(made, arrived) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
        stats = graph.stats()
    finally:
        await service.stop()
        await workforce.stop()
        await graph.stop()
    return _figures(made, arrived, stats, rate)


async def _change_calendars(
    graph: GraphEmulator, addresses: list[str], changes: int, rate: float, arrived: dict[tuple[str, str], float]
) -> list[Change]:
    """Creates, moves and deletes at `rate` by the schedule (a late change is still made, never skipped)."""
    made: list[Change] = []
    live: list[tuple[str, str]] = []  # (address, event) of events not deleted
    rng = random.Random(1)
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    first = time.perf_counter()
    for index in range(changes):
        scheduled = first + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        start = tomorrow + timedelta(days=rng.randint(0, 20), hours=rng.randint(8, 16))
        fields = {"subject": f"change-{index}", "start": _at(start), "end": _at(start + timedelta(hours=1))}
        draw = rng.random()
        # Only an event the workforce system was shown can be deleted in its eyes: a delete of one it never saw
        # (created and deleted between two reads) rightly sends nothing, and would look lost here.
        shown_events = {change.event for n, change in enumerate(made) if change.key(n) in arrived}
        shown = [pair for pair in live if pair[1] in shown_events]
        if live and draw < 0.3:
            address, event = live[rng.randrange(len(live))]
            graph.update_event_as_outlook(address, event, fields)
            change = Change("update", address, event, scheduled)
        elif shown and draw < 0.45:
            address, event = shown[rng.randrange(len(shown))]
            graph.delete_event_as_outlook(address, event)
            live.remove((address, event))
            change = Change("delete", address, event, scheduled)
        else:
            address = addresses[index % len(addresses)]
            event = str(graph.create_event_as_outlook(address, fields | {"showAs": "busy"})["id"])
            live.append((address, event))
            change = Change("create", address, event, scheduled)
        change.made = time.perf_counter()
        made.append(change)
    return made


def _covering(made: list[Change], index: int) -> list[int]:
    """The change itself and the later changes of its event: the arrival of any of them carries its effect."""
    event = made[index].event
    return [later for later in range(index, len(made)) if made[later].event == event]


def _seen(made: list[Change], arrived: dict[tuple[str, str], float], index: int) -> float | None:
    """When the change's effect reached the workforce system: the first arrival among the changes covering it."""
    times = [arrived[made[j].key(j)] for j in _covering(made, index) if made[j].key(j) in arrived]
    times = [at for at in times if at >= made[index].made]
    return min(times, default=None)


def _lost(made: list[Change], arrived: dict[tuple[str, str], float]) -> list[int]:
    return [index for index in range(len(made)) if _seen(made, arrived, index) is None]


def _figures(
    made: list[Change], arrived: dict[tuple[str, str], float], stats: dict[str, Any], rate: float
) -> dict[str, Any]:
    lost = _lost(made, arrived)
    latencies = [seen - change.scheduled for index, change in enumerate(made) if (seen := _seen(made, arrived, index))]
    by_itself = sum(1 for index, change in enumerate(made) if change.key(index) in arrived)
    span = made[-1].made - made[0].scheduled
    requests = sum(count for route, count in stats["byRoute"].items() if route in PER_CHANGE_ROUTES)
    return {
        "changes": len(made),
        "kinds": dict(Counter(change.kind for change in made)),
        "offered_changes_per_s": rate,
        "achieved_changes_per_s": round((len(made) - 1) / span, 2),
        "change_lag_p99_s": round(statistics.quantiles([c.made - c.scheduled for c in made], n=100)[98], 3),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(statistics.quantiles(latencies, n=100)[98], 3),
        "graph_requests_per_change": round(requests / len(made), 2),
        "arrived": by_itself,
        "coalesced": len(made) - by_itself - len(lost),
        "lost": len(lost),
        "requests_by_route": {route: count for route, count in stats["byRoute"].items() if count},
    }


async def _watch(workforce: WorkforceReceiver, arrived: dict[tuple[str, str], float]) -> None:
    """Timestamp each change as it reaches the workforce system: a delete by its event, others by their subject."""
    seen = 0
    while True:
        for change in workforce.changes[seen:]:
            appointment = change["appointment"]
            key = (
                ("deleted", appointment["id"])
                if change["type"] == "appointment.deleted"
                else ("shown", appointment.get("subject", ""))
            )
            arrived.setdefault(key, time.perf_counter())
        seen = len(workforce.changes)
        await asyncio.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0, help="changes per second")
    args = parser.parse_args()
    result = asyncio.run(measure(args.changes, args.rate))
    print(
        f"{result['changes']} changes {result['kinds']}: offered {result['offered_changes_per_s']}/s, achieved "
        f"{result['achieved_changes_per_s']}/s (p99 {result['change_lag_p99_s']} s behind schedule); Graph latency "
        f"{LATENCY_MS} ms per answer"
    )
    print(
        f"{result['arrived']} arrived themselves, {result['coalesced']} were carried by a later change of the same "
        f"event that arrived, {result['lost']} lost"
    )
    print(f"scheduled change → workforce: p50 {result['latency_p50_s']} s, p99 {result['latency_p99_s']} s")
    print(f"Graph requests per change: {result['graph_requests_per_change']} ({result['requests_by_route']})")
    print(json.dumps({**result, "errors": result["lost"]}))


if __name__ == "__main__":
    main()
