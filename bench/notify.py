"""How many Graph notifications the bridge's receiver takes, and how fast it acknowledges them.

The bridge side is real: `POST /hooks/graph` (GraphHooks, group-committed dirty marks) on its SQLite store with
1,000 mailboxes and subscriptions, served by aiohttp in its own process. The load comes from this process over
loopback, through persistent HTTP/1.1 connections with a minimal client (aiohttp's client would be the bottleneck
on 2 cores). Bodies of 10 notifications, and single-notification bodies, each twice: paced at an offered rate
(open loop: every connection has its send slots fixed in advance; a slot its connection cannot meet because the
previous answer is still out is sent late, never dropped, counted as missed, and its latency counts from the slot),
then unpaced (each connection sends as soon as its previous answer is in). The figures are the achieved rates;
the offered ones are printed beside them.

Run: .venv/bin/python bench/notify.py [--seconds 10] [--connections 32] [--batched-rate 1100] [--single-rate 3300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emulators.harness import free_port

MAILBOXES = 1000


def seed(db_path: Path) -> list[tuple[str, str]]:
    from bridge.store import Database, MailboxRow, SubscriptionRow

    db = Database(f"sqlite:///{db_path}")
    db.upgrade()
    subscriptions = []
    with db.session() as session:
        for n in range(MAILBOXES):
            mailbox = MailboxRow(address=f"user{n}@contoso.com", source="online")
            session.add(mailbox)
            session.flush()
            assert mailbox.id is not None
            subscription_id, client_state = str(secrets.token_hex(16)), secrets.token_urlsafe(48)
            session.add(
                SubscriptionRow(
                    id=subscription_id,
                    mailbox_id=mailbox.id,
                    source="online",
                    resource=f"/users/user{n}@contoso.com/events",
                    client_state=client_state,
                    expires_at=datetime.now(UTC) + timedelta(days=3),
                )
            )
            subscriptions.append((subscription_id, client_state))
    db.close()
    return subscriptions


def serve(db_path: Path, port: int) -> None:
    from aiohttp import web

    from bridge.marks import DirtyMarks
    from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
    from bridge.store import Database
    from bridge.web.graph_hooks import GraphHooks

    db = Database(f"sqlite:///{db_path}")
    app = web.Application()
    app.add_routes(GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS).routes())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def body(subscriptions: list[tuple[str, str]], count: int) -> bytes:
    items = []
    for subscription_id, client_state in random.sample(subscriptions, count):
        event_id = secrets.token_urlsafe(24)
        items.append(
            {
                "subscriptionId": subscription_id,
                "subscriptionExpirationDateTime": "2026-11-29T22:11:09.952Z",
                "clientState": client_state,
                "changeType": "updated",
                "resource": f"Users/x/Events/{event_id}",
                "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": event_id},
            }
        )
    return json.dumps({"value": items}).encode()


def request(port: int, payload: bytes) -> bytes:
    head = (
        f"POST /hooks/graph HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def connection(port: int, requests: list[bytes], schedule: Iterable[float], run: Run) -> None:
    """Send one request per scheduled time. Every one is sent, late if the previous answer kept the connection
    busy, and its latency counts from its scheduled time (no coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, scheduled in enumerate(schedule):
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            if run.interval and time.perf_counter() - scheduled > run.interval:
                run.missed += 1  # it could not leave within its own slot
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if status != b"202":
                run.errors.append(status.decode())
            run.latencies.append(time.perf_counter() - scheduled)
    finally:
        writer.close()


def back_to_back(until: float) -> Iterator[float]:
    """An unpaced connection's schedule: now, whenever it is free again, until `until`."""
    while (now := time.perf_counter()) < until:
        yield now


@dataclass
class Run:
    interval: float  # seconds between one connection's slots; 0: back to back
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missed: int = 0


async def load(port: int, payloads: list[bytes], seconds: float, connections: int, rate: float = 0) -> dict[str, Any]:
    """Offered and achieved requests per second, latency, missed slots, non-202 answers; `rate` 0: unpaced."""
    requests = [request(port, payload) for payload in payloads]
    run = Run(interval=connections / rate if rate else 0.0)
    started = time.perf_counter()
    until = started + seconds

    def schedule() -> Iterable[float]:
        if not rate:
            return back_to_back(until)
        first = started + random.random() * run.interval  # the connections' slots interleave
        return [first + k * run.interval for k in range(math.ceil((until - first) / run.interval))]

    await asyncio.gather(*(connection(port, requests, schedule(), run) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(run.latencies, n=100) if len(run.latencies) > 100 else [float("nan")] * 99
    return {
        "offered_rps": rate or None,
        "achieved_rps": round(len(run.latencies) / elapsed),
        "requests": len(run.latencies),
        "seconds": round(elapsed, 2),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p99_ms": round(quantiles[98] * 1000, 1),
        "missed_slots": run.missed,
        "errors": len(run.errors),
    }


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def dirty_mailboxes(db_path: Path) -> int:
    from sqlmodel import select

    from bridge.store import Database, MailboxRow

    db = Database(f"sqlite:///{db_path}")
    with db.session() as session:
        rows = session.exec(select(MailboxRow).where(MailboxRow.dirty_generation > 0)).all()
    db.close()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batched-rate", type=float, default=1100.0, help="offered requests/s of 10 notifications")
    parser.add_argument("--single-rate", type=float, default=3300.0, help="offered requests/s of one notification")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "bench.db"
        subscriptions = seed(db_path)
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(db_path), str(port)])
        try:
            wait_for(port)
            batched = [body(subscriptions, 10) for _ in range(200)]
            single = [body(subscriptions, 1) for _ in range(2000)]
            asyncio.run(load(port, single, 1.0, args.connections))  # warm-up
            runs = {
                "batched": asyncio.run(load(port, batched, args.seconds, args.connections, args.batched_rate)),
                "single": asyncio.run(load(port, single, args.seconds, args.connections, args.single_rate)),
                "batched_saturated": asyncio.run(load(port, batched, args.seconds, args.connections)),
                "single_saturated": asyncio.run(load(port, single, args.seconds, args.connections)),
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
        marked = dirty_mailboxes(db_path)
    for name, run in runs.items():
        per = 10 if name.startswith("batched") else 1
        offered = f"{run['offered_rps']:6.0f}/s" if run["offered_rps"] else "unpaced"
        print(
            f"{name:18s} offered {offered:>9s}, achieved {run['achieved_rps']:6d} requests/s "
            f"= {run['achieved_rps'] * per:6d} notifications/s; p50 {run['p50_ms']:6.1f} ms, "
            f"p99 {run['p99_ms']:6.1f} ms from the scheduled send; {run['missed_slots']} missed slots, "
            f"{run['errors']} errors"
        )
    print(f"mailboxes marked dirty: {marked} of {MAILBOXES}")
    batched, single = runs["batched"], runs["single"]
    result = {
        "batched_offered_requests_per_s": batched["offered_rps"],
        "batched_notifications_per_s": batched["achieved_rps"] * 10,
        "batched_p99_ms": batched["p99_ms"],
        "batched_missed_slots": batched["missed_slots"],
        "single_offered_requests_per_s": single["offered_rps"],
        "single_requests_per_s": single["achieved_rps"],
        "single_p99_ms": single["p99_ms"],
        "single_missed_slots": single["missed_slots"],
        "saturated_batched_notifications_per_s": runs["batched_saturated"]["achieved_rps"] * 10,
        "saturated_single_requests_per_s": runs["single_saturated"]["achieved_rps"],
        "saturated_single_p99_ms": runs["single_saturated"]["p99_ms"],
        "mailboxes_marked": marked,
        "errors": sum(run["errors"] for run in runs.values()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
