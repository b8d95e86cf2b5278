"""How many Graph notifications the bridge's receiver takes, and how fast it acknowledges them.

The bridge side is real: `POST /hooks/graph` (GraphHooks, group-committed dirty marks) on its SQLite store with
1,000 mailboxes and subscriptions, served by aiohttp in its own process. The load comes from this process over
loopback, through persistent HTTP/1.1 connections with a minimal client (aiohttp's client would be the bottleneck
on 2 cores). Two runs: bodies of 10 notifications, and single-notification bodies.

Run: .venv/bin/python bench/notify.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    from bridge.store import Database
    from bridge.web.graph_hooks import GraphHooks

    db = Database(f"sqlite:///{db_path}")
    app = web.Application()
    app.add_routes(GraphHooks(db, DirtyMarks(db)).routes())
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


async def connection(
    port: int, requests: list[bytes], until: float, interval: float, latencies: list[float], errors: list[str]
) -> None:
    """Send one request every `interval` seconds (0: back to back); latency counts from the scheduled send time,
    so a slow answer that delays the next request is not hidden (no coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        index = 0
        scheduled = time.perf_counter() + random.random() * interval
        while scheduled < until:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            started = scheduled if interval else time.perf_counter()
            writer.write(requests[index % len(requests)])
            index += 1
            scheduled = max(scheduled + interval, time.perf_counter()) if interval else time.perf_counter()
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if status != b"202":
                errors.append(status.decode())
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def load(
    port: int, payloads: list[bytes], seconds: float, connections: int, rate: float = 0
) -> tuple[int, float, int]:
    """Requests per second achieved, p99 latency in ms, non-202 answers; `rate` 0 means as fast as it goes."""
    requests = [request(port, payload) for payload in payloads]
    latencies: list[float] = []
    errors: list[str] = []
    interval = connections / rate if rate else 0.0
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(connection(port, requests, until, interval, latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 100 else float("nan")
    return round(len(latencies) / elapsed), p99, len(errors)


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
                "batched at 1,100 requests/s": asyncio.run(load(port, batched, args.seconds, args.connections, 1100)),
                "single at 3,300 requests/s": asyncio.run(load(port, single, args.seconds, args.connections, 3300)),
                "batched, saturated": asyncio.run(load(port, batched, args.seconds, args.connections)),
                "single, saturated": asyncio.run(load(port, single, args.seconds, args.connections)),
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
        marked = dirty_mailboxes(db_path)
    for name, (rps, p99, errors) in runs.items():
        per = 10 if name.startswith("batched") else 1
        print(f"{name:30s} {rps:6d} requests/s = {rps * per:6d} notifications/s, p99 {p99:5.1f} ms, {errors} errors")
    print(f"mailboxes marked dirty: {marked} of {MAILBOXES}")
    batched_paced, single_paced = runs["batched at 1,100 requests/s"], runs["single at 3,300 requests/s"]
    result = {
        "batched_notifications_per_s": batched_paced[0] * 10,
        "single_requests_per_s": single_paced[0],
        "ack_p99_ms": round(max(batched_paced[1], single_paced[1]), 1),
        "batched_p99_ms": round(batched_paced[1], 1),
        "single_p99_ms": round(single_paced[1], 1),
        "saturated_batched_notifications_per_s": runs["batched, saturated"][0] * 10,
        "saturated_single_requests_per_s": runs["single, saturated"][0],
        "errors": sum(errors for _, _, errors in runs.values()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
