"""CPU per Graph request of the bridge's Graph source, against the Graph emulator in its own process.

The source (`bridge.sources.graph.GraphSource`, TLS, the emulator's CA) makes the three requests the first start
makes per mailbox, each kind at the concurrency the bridge runs it at: delta reads of 40-event calendars
(`sync.concurrency` mailboxes at once), subscription creations (the upkeep's 16 at once) and mailboxSettings reads
(one at a time: the cost of one request; `zones_batched` is the zone refresher's way, 20 to a `$batch`, per
mailbox). Every Graph answer takes `--latency-ms` (20 ms, as in bench/initial_sync.py),
so the pool holds as many connections as a bridge does; then all three kinds side by side (`mixed`), as in a first
start. Printed per kind: this process's CPU time (user + system) per request, which is the source's whole cost
(kiota's middleware, httpx and httpcore, TLS, decoding) plus, for subscriptions, answering Graph's validation
request (the notification URL is served by this process); JSON last. Other processes' load moves the figures:
compare versions in alternation, several runs each.

Run: .venv/bin/python bench/graph_requests.py [--mailboxes 200] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiohttp import web

from bridge.config import GraphSourceConfig
from bridge.domain import SubscriptionRequest, Window
from bridge.sources.graph import graph_source

EVENTS = 40
T = TypeVar("T")


async def _echo(request: web.Request) -> web.Response:
    """Graph's subscription validation: the token echoed as text/plain."""
    return web.Response(text=request.query.get("validationToken", ""), content_type="text/plain")


async def _seed(control: str, addresses: list[str]) -> None:
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    slots = asyncio.Semaphore(32)
    async with httpx.AsyncClient(verify=False, timeout=60) as client:

        async def event(address: str, n: int) -> None:
            start = tomorrow + timedelta(days=n, hours=9)
            payload = {
                "subject": f"work {n}",
                "showAs": "busy",
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            }
            async with slots:
                (await client.post(f"{control}/users/{address}/events", json=payload)).raise_for_status()

        await asyncio.gather(*(event(address, n) for address in addresses for n in range(EVENTS)))


async def _phase(items: list[T], concurrency: int, call: Callable[[T], Awaitable[Any]]) -> float:
    """Microseconds of this process's CPU per call of `call` over `items`, `concurrency` at once."""
    slots = asyncio.Semaphore(concurrency)

    async def one(item: T) -> None:
        async with slots:
            await call(item)

    before = time.process_time()
    await asyncio.gather(*(one(item) for item in items))
    return (time.process_time() - before) / len(items) * 1e6


async def _run(args: argparse.Namespace, emulator: dict[str, Any], hook_url: str) -> dict[str, float]:
    addresses = [user["userPrincipalName"] for user in emulator["users"]]
    await _seed(emulator["controlUrl"], addresses)
    source = graph_source(
        GraphSourceConfig(
            name="online",
            tenant_id=emulator["tenantId"],
            client_id=emulator["clientId"],
            client_secret=emulator["clientSecret"],
            authority_host=emulator["authority"],
            graph_url=emulator["graphUrl"],
            ca_file=Path(emulator["caFile"]),
        )
    )
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    window = Window(today, today + timedelta(days=90))

    def subscription(address: str, hook: str) -> SubscriptionRequest:
        return SubscriptionRequest(address, hook, hook, "x" * 64, datetime.now(UTC) + timedelta(days=6))

    try:
        await source.read_time_zone(addresses[0])  # the token, and one connection, before measuring
        profile = cProfile.Profile() if args.profile else None
        if profile is not None:
            profile.enable()
        delta = lambda a: source.read_delta(a, window, None)  # noqa: E731
        subscribe = lambda a: source.subscribe(subscription(a, f"{hook_url}/1"))  # noqa: E731
        # Graph refuses a second subscription with the same resource and notification URL.
        subscribe_again = lambda a: source.subscribe(subscription(a, f"{hook_url}/2"))  # noqa: E731
        figures = {
            "delta_us": await _phase(addresses, args.sync_concurrency, delta),
            "subscribe_us": await _phase(addresses, 16, subscribe),
            "mailbox_settings_us": await _phase(addresses, 1, source.read_time_zone),
        }
        batches = [addresses[first : first + 20] for first in range(0, len(addresses), 20)]
        figures["zones_batched_us"] = await _phase(batches, 1, source.read_time_zones) * len(batches) / len(addresses)
        # All three side by side, as in a first start: the pool holds the connections of all of them.
        before = time.process_time()
        await asyncio.gather(
            _phase(addresses, args.sync_concurrency, delta),
            _phase(addresses, 16, subscribe_again),
            _phase(addresses, 1, source.read_time_zone),
        )
        figures["mixed_us"] = (time.process_time() - before) / (3 * len(addresses)) * 1e6
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
    finally:
        await source.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--sync-concurrency", type=int, default=8, help="delta reads at once (sync.concurrency)")
    parser.add_argument("--profile", help="write a cProfile of the measured phases here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="graph-requests-"))
    users = [f"--user=user{n:05d}@contoso.com" for n in range(args.mailboxes)]
    command = [sys.executable, "-m", "emulators.graph", "--port=0", f"--ca-file={folder / 'ca.pem'}", "--no-rate-limit"]
    command += [f"--latency-ms={args.latency_ms}", *users]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert process.stdout is not None
        line = ""
        while not line.startswith("{"):
            line = process.stdout.readline()
            if not line:
                raise SystemExit("the Graph emulator ended before listening")
        emulator = json.loads(line)

        async def run() -> dict[str, float]:
            app = web.Application()
            app.router.add_post("/hook/{n}", _echo)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                return await _run(args, emulator, f"http://127.0.0.1:{port}/hook")
            finally:
                await runner.cleanup()

        figures = asyncio.run(run())
    finally:
        process.terminate()
        process.wait()
    for name, value in figures.items():
        print(f"{name}: {value:.0f} µs of CPU per {'mailbox' if name == 'zones_batched_us' else 'request'}")
    print(json.dumps({"mailboxes": args.mailboxes, **{k: round(v) for k, v in figures.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
