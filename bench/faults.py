"""A fault ledger: a hybrid deployment through a scripted bad day, and what reached the workforce system.

The Graph emulator (20 mailboxes, Exchange Online) and the EWS emulator (5 mailboxes, on-premises), both with
20 ms of simulated latency on every answer, and the workforce receiver run in this process; the bridge runs as
its own process (`presence-bridge run`, default timing, SQLite), so that it can be killed. People change their
calendars at a steady rate (creates, moves and deletes; a move or delete only of an appointment whose previous
change has arrived), while this script breaks things one after another:

    EWS unreachable (its server stopped)                                   60 s
    30 % of Graph requests answered 429 with Retry-After: 2               30 s
    the workforce endpoint answering 503                                   60 s
    20 % of Graph notifications dropped                                    30 s
    one Graph mailbox removed from the tenant (no change is made to it from 20 s before the drops on)
    the bridge killed with SIGKILL, and started again at once

with healthy stretches between (`--scale` shortens every stretch and fault alike). Then changes stop and the
ledger waits for the last ones.

The ledger, from what the receiver got: `lost` (changes never delivered), `duplicated_ids` (change ids delivered
again after they were accepted, plus changes delivered under more than one id), `out_of_order` (a mailbox's
sequence going backwards, or an appointment's changes arriving in another order than they were made),
`requests_before_retry_after` (Graph requests for a mailbox that arrived before the Retry-After of its last 429
had passed, counted by the emulator), and `healthy_p99_s`: the 99th percentile of change → workforce latency,
counted from the change's scheduled time, over the changes whose path (their own source, their notifications,
the workforce endpoint, the bridge process) no fault touched from when they were made until 2 s (the goal)
later.

Run: .venv/bin/python bench/faults.py [--rate 4] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulators.ews import EwsEmulator
from emulators.graph import GraphEmulator
from emulators.harness import SECRET, BridgeProcess, OnPrem, free_port, write_config
from emulators.workforce import WorkforceReceiver

GRAPH_MAILBOXES = 20
EWS_MAILBOXES = 5
LATENCY_MS = 20
RETRY_AFTER_S = 2
GOAL_S = 2.0  # healthy_p99_s's goal
SERVICE_ACCOUNT = ("CONTOSO\\svc-presence", "bench-service-account-password")
DOOMED = f"user{GRAPH_MAILBOXES - 1}@contoso.com"  # removed from the tenant during the run
ALL = "all"  # a fault on every path: the workforce endpoint, the bridge process


@dataclass
class Change:
    key: str  # the subject it sets (creates, moves), or the appointment's id (deletes)
    mailbox: str
    path: str  # "graph" or "ews"
    item: str
    kind: str  # created, updated, deleted
    scheduled: float
    arrived: float | None = None
    seen_as: str | None = None  # the appointment id the workforce system got it under


@dataclass
class Ledger:
    changes: list[Change] = field(default_factory=list)
    pending: dict[str, Change] = field(default_factory=dict)  # "created:subject" or "deleted:appointment id"
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # (path, start, end)
    errors: list[str] = field(default_factory=list)

    def healthy(self, change: Change) -> bool:
        """No fault touched the change's path from when it was made until the goal latency later (a change made
        just before a fault began could be caught by it)."""
        return not any(
            path in (change.path, ALL, change.mailbox) and start < change.scheduled + GOAL_S and change.scheduled < end
            for path, start, end in self.faults
        )


class People:
    """The people of both organisations changing their calendars; every change is written to the ledger."""

    def __init__(self, graph: GraphEmulator, ews: EwsEmulator, ledger: Ledger, seed: int = 1) -> None:
        self.graph, self.ews, self.ledger = graph, ews, ledger
        self.rng = random.Random(seed)
        self.online = [f"user{n}@contoso.com" for n in range(GRAPH_MAILBOXES)]
        self.onprem = [f"onprem{n}@contoso.com" for n in range(EWS_MAILBOXES)]
        self.items: dict[str, list[str]] = defaultdict(list)  # mailbox → its live appointments
        self.last: dict[str, Change] = {}  # appointment → its latest change
        self.left: set[str] = set()  # mailboxes nobody changes any more
        self.count = 0
        self.tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(1)

    def change(self, scheduled: float) -> None:
        choices = [m for m in self.online + self.onprem if m not in self.left]
        mailbox = self.rng.choice(choices)
        path = "graph" if mailbox in self.online else "ews"
        settled = [item for item in self.items[mailbox] if self.last[item].arrived is not None]
        roll = self.rng.random()
        key = f"c{self.count}"
        self.count += 1
        start = self.tomorrow + timedelta(days=self.rng.randint(0, 20), hours=self.rng.randint(7, 17))
        end = start + timedelta(hours=1)
        if settled and roll < 0.15:
            item = self.rng.choice(settled)
            self._delete(path, mailbox, item)
            self.items[mailbox].remove(item)
            made = Change(self.last[item].seen_as or item, mailbox, path, item, "deleted", scheduled)
        elif settled and roll < 0.4:
            item = self.rng.choice(settled)
            self._update(path, mailbox, item, key, start, end)
            made = Change(key, mailbox, path, item, "updated", scheduled)
        else:
            item = self._create(path, mailbox, key, start, end)
            self.items[mailbox].append(item)
            made = Change(key, mailbox, path, item, "created", scheduled)
        self.last[item] = made
        self.ledger.changes.append(made)
        self.ledger.pending[f"{made.kind == 'deleted'}:{made.key}"] = made

    def _create(self, path: str, mailbox: str, subject: str, start: datetime, end: datetime) -> str:
        if path == "ews":
            return self.ews.create_item_as_outlook(mailbox, subject=subject, start=start, end=end, free_busy="Busy")
        event = {"subject": subject, "start": _at(start), "end": _at(end), "showAs": "busy"}
        return str(self.graph.create_event_as_outlook(mailbox, event)["id"])

    def _update(self, path: str, mailbox: str, item: str, subject: str, start: datetime, end: datetime) -> None:
        if path == "ews":
            self.ews.update_item_as_outlook(mailbox, item, subject=subject, start=start, end=end)
        else:
            self.graph.update_event_as_outlook(
                mailbox, item, {"subject": subject, "start": _at(start), "end": _at(end)}
            )

    def _delete(self, path: str, mailbox: str, item: str) -> None:
        if path == "ews":
            self.ews.delete_item_as_outlook(mailbox, item)
        else:
            self.graph.delete_event_as_outlook(mailbox, item)


def _at(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


async def watch(workforce: WorkforceReceiver, ledger: Ledger) -> None:
    """Timestamp each change as it reaches the workforce system."""
    seen = 0
    while True:
        now = time.perf_counter()
        for received in workforce.changes[seen:]:
            appointment = received["appointment"]
            deleted = received["type"] == "appointment.deleted"
            key = appointment.get("id") if deleted else appointment.get("subject")
            made = ledger.pending.pop(f"{deleted}:{key}", None)
            if made is not None:
                made.arrived = now
                made.seen_as = appointment.get("id")
        seen = len(workforce.changes)
        await asyncio.sleep(0.005)


async def run(rate: float, scale: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-faults-"))
    ledger = Ledger()
    graph = GraphEmulator(ca_file=folder / "graph-ca.pem")
    await graph.start()
    ews = EwsEmulator(ca_file=folder / "ews-ca.pem")
    ews_url = await ews.start()
    ews_port = urlsplit(ews.base_url).port or 0
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    app = graph.add_app()
    people = People(graph, ews, ledger)
    for address in people.online:
        graph.add_user(address)
    ews.add_service_account(*SERVICE_ACCOUNT)
    for address in people.onprem:
        ews.add_mailbox(address)
    port = free_port()
    config = write_config(
        folder / "config.yaml",
        graph=graph,
        app=app,
        port=port,
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=f"sqlite:///{folder / 'bridge.db'}",
        mailboxes=[(address, f"E{n:04d}") for n, address in enumerate(people.online)],
        onprem=OnPrem(ews_url, ews.ca_file, *SERVICE_ACCOUNT, [(a, f"P{n:04d}") for n, a in enumerate(people.onprem)]),
    )
    bridge = BridgeProcess(config, f"http://127.0.0.1:{port}", folder / "bridge.log")
    watcher: asyncio.Task[None] | None = None
    try:
        await bridge.start()
        while len(graph.subscriptions()) < GRAPH_MAILBOXES or not all(s["connected"] for s in ews.subscriptions()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # the catch-up syncs after subscribing
        graph.set_latency(LATENCY_MS)
        ews.latency_ms = LATENCY_MS
        graph.clear_stats()
        watcher = asyncio.create_task(watch(workforce, ledger))
        clock = Script(ledger, scale)
        changes = asyncio.create_task(make_changes(people, rate, clock))
        await clock.steady(20)
        began = clock.now()
        await ews.stop()
        await clock.steady(60)
        await ews.start(port=ews_port)
        ledger.faults.append(("ews", began, clock.now()))
        await clock.steady(15)
        began = clock.now()
        graph.throttle_share(0.3, 30 * scale, retry_after=RETRY_AFTER_S)
        await clock.steady(30)
        ledger.faults.append(("graph", began, clock.now()))
        await clock.steady(15)
        began = clock.now()
        workforce.fail(status=503)
        await clock.steady(60)
        workforce.recover()
        ledger.faults.append((ALL, began, clock.now()))
        await clock.steady(5)
        people.left.add(DOOMED)
        ledger.faults.append((DOOMED, clock.now(), float("inf")))
        await clock.steady(20)
        began = clock.now()
        graph.drop_notification_share(0.2)
        await clock.steady(30)
        graph.drop_notification_share(0.0)
        ledger.faults.append(("graph", began, clock.now()))
        await clock.steady(10)
        missing = [c for c in ledger.changes if c.mailbox == DOOMED and c.arrived is None]
        if missing:
            ledger.errors.append(f"{len(missing)} changes of {DOOMED} had not arrived when it was removed")
        graph.remove_user(DOOMED)
        await clock.steady(15)
        began = clock.now()
        await bridge.kill()
        await bridge.start()
        ledger.faults.append((ALL, began, clock.now()))
        await clock.steady(30)
        changes.cancel()
        clock.stopped = clock.now()
        deadline = time.perf_counter() + 120
        while any(c.arrived is None for c in ledger.changes) and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
        duration = clock.stopped - clock.zero
        graph_stats = graph.stats(log_limit=0)
        received = workforce.stats()
    finally:
        if watcher is not None:
            watcher.cancel()
        await bridge.stop()
        await workforce.stop()
        await ews.stop()
        await graph.stop()
    return ledger_figures(ledger, workforce, graph_stats, received, rate, duration, clock.zero, bridge.log)


class Script:
    """The script's clock: seconds since the changes began; `steady(s)` lets `s × scale` seconds pass."""

    def __init__(self, ledger: Ledger, scale: float) -> None:
        self.ledger, self.scale = ledger, scale
        self.zero = self.stopped = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter()

    async def steady(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.scale)


async def make_changes(people: People, rate: float, clock: Script) -> None:
    """One change every 1/rate seconds, each on its schedule (a late one is still made, and timed from it)."""
    index = 0
    while True:
        scheduled = clock.zero + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        people.change(scheduled)
        index += 1


def ledger_figures(
    ledger: Ledger,
    workforce: WorkforceReceiver,
    graph_stats: dict[str, Any],
    received: dict[str, Any],
    rate: float,
    duration: float,
    zero: float,
    log: Path,
) -> dict[str, Any]:
    made = ledger.changes
    delivered = [c for c in made if c.arrived is not None]
    healthy = [c.arrived - c.scheduled for c in delivered if c.arrived is not None and ledger.healthy(c)]
    # Changes delivered under more than one id: the receiver could not tell them apart.
    ids: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[int]] = defaultdict(list)
    index = {c.key: n for n, c in enumerate(made) if c.kind != "deleted"}
    for change in workforce.changes:
        appointment = change["appointment"]
        if change["type"] == "appointment.deleted":
            ids[f"deleted:{appointment.get('id')}"].add(change["id"])
        elif appointment.get("subject") in index:
            ids[appointment["subject"]].add(change["id"])
            order[appointment.get("id", "")].append(index[appointment["subject"]])
    several = sum(1 for found in ids.values() if len(found) > 1)
    inversions = sum(sum(1 for a, b in itertools.pairwise(seq) if b < a) for seq in order.values())
    anomalies = received["anomalies"]
    backwards = sum(1 for anomaly in anomalies if anomaly["kind"] == "backwards")
    gaps = [anomaly for anomaly in anomalies if anomaly["kind"] == "gap"]
    if gaps:
        ledger.errors.append(f"{len(gaps)} gaps in a mailbox's sequence numbers at the receiver")
    slowest = sorted(
        (c for c in delivered if c.arrived is not None and ledger.healthy(c)),
        key=lambda c: c.scheduled - c.arrived,  # type: ignore[operator]
    )[:5]
    tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")
    return {
        "offered_rate": rate,
        "achieved_rate": round(len(made) / duration, 2),
        "healthy_changes": len(healthy),
        "healthy_p50_s": round(statistics.median(healthy), 3) if healthy else None,
        "tracebacks_in_bridge_log": tracebacks,
        "bridge_log": str(log),
        "graph_429": graph_stats["byStatus"].get("429", 0),
        "resent_same_id": received["duplicates"],
        "under_several_ids": several,
        "slowest_healthy": [
            f"{c.path} {c.kind} at {c.scheduled - zero:.1f} s: {c.arrived - c.scheduled:.1f} s"  # type: ignore[operator]
            for c in slowest
        ],
        "faults": [f"{path} {start - zero:.1f}-{end - zero:.1f} s" for path, start, end in ledger.faults],
        "ledger": {
            "changes_made": len(made),
            "delivered": len(delivered),
            "lost": len(made) - len(delivered),
            "duplicated_ids": received["duplicates"] + several,
            "out_of_order": backwards + inversions,
            "healthy_p99_s": round(statistics.quantiles(healthy, n=100)[98], 3) if len(healthy) > 1 else None,
            "requests_before_retry_after": graph_stats["requestsBeforeRetryAfter"],
            "errors": ledger.errors,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=4.0, help="calendar changes per second, all mailboxes")
    parser.add_argument("--scale", type=float, default=1.0, help="stretch (or shrink) every phase of the script")
    args = parser.parse_args()
    result = asyncio.run(run(args.rate, args.scale))
    ledger = result["ledger"]
    print(
        f"offered {result['offered_rate']} changes/s, made {ledger['changes_made']} "
        f"({result['achieved_rate']} changes/s); delivered {ledger['delivered']}, lost {ledger['lost']}"
    )
    print(
        f"healthy changes: {result['healthy_changes']}, p50 {result['healthy_p50_s']} s, "
        f"p99 {ledger['healthy_p99_s']} s (from the scheduled time); Graph answered 429 {result['graph_429']} times, "
        f"{ledger['requests_before_retry_after']} requests came before their Retry-After"
    )
    print(
        f"duplicated ids {ledger['duplicated_ids']} ({result['resent_same_id']} ids sent again after they were "
        f"accepted, {result['under_several_ids']} changes under several ids), out of order {ledger['out_of_order']}; "
        f"{result['tracebacks_in_bridge_log']} tracebacks in the bridge's log ({result['bridge_log']})"
    )
    print(f"faults: {', '.join(result['faults'])}")
    print(f"slowest healthy changes: {'; '.join(result['slowest_healthy'])}")
    for error in ledger["errors"]:
        print(f"error: {error}")
    print(json.dumps(ledger))


if __name__ == "__main__":
    main()
