"""Workforce command → event in Exchange: latency at a steady rate of creates through the REST API.

Starts the Graph emulator with 20 ms of simulated latency on every Graph answer, the workforce receiver and the
bridge (default timing, SQLite) on loopback, then POSTs appointments to /api/v1/mailboxes/{m}/appointments at a
fixed rate, open loop (each request leaves on schedule whether or not earlier ones have been answered), spread
over 20 mailboxes. Measured per create: from sending the request until the emulator holds the event ("in
Exchange"), and until the 201 arrives (which also covers the bridge recording Exchange's answer). The writes'
notifications and delta reads run meanwhile, as in production; the receiver must get no echo of them.

Run: .venv/bin/python bench/relay.py [--creates 1000] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bridge.demo import SECRET, local_config
from bridge.emulators.graph import GraphEmulator
from bridge.emulators.graph_events import Change
from bridge.emulators.workforce import WorkforceReceiver
from bridge.service import Service

MAILBOXES = 20
LATENCY_MS = 20
TOKEN = "bench-relay-token-0123456789"


async def measure(creates: int, rate: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-bench-"))
    graph = GraphEmulator(ca_file=folder / "ca.pem")
    await graph.start()
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    people = [(f"user{n}@contoso.com", f"User {n}", f"E{n:04d}") for n in range(MAILBOXES)]
    extra = f"api_tokens:\n  - {{name: bench, token: {TOKEN}, scopes: [workforce]}}\n"
    service = Service(local_config(folder, graph, workforce_url, people, extra))
    await service.start()
    in_exchange: dict[str, float] = {}

    def heard(change: Change) -> None:
        if change.change_type == "created":
            in_exchange.setdefault(change.event_id, time.perf_counter())

    graph.state.on_change(heard)
    try:
        while len(graph.subscriptions()) < MAILBOXES:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the catch-up syncs after subscribing
        graph.set_latency(LATENCY_MS)
        tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        connector = aiohttp.TCPConnector(limit=0)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(service.url, connector=connector, headers=headers) as session:
            started = time.perf_counter()
            tasks = []
            for index in range(creates):
                start = tomorrow + timedelta(days=index % 30, minutes=index)
                body = {
                    "template": "meeting",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=30)).isoformat(),
                }
                address = people[index % MAILBOXES][0]
                due = started + index / rate
                tasks.append(asyncio.create_task(_create(session, address, body, f"bench-{index}", due)))
            answers = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
        await asyncio.sleep(3.0)  # let the writes' notifications and delta reads come back
        echoes = len(workforce.changes)
    finally:
        await service.stop()
        await workforce.stop()
        await graph.stop()
    failed = [answer for answer in answers if answer[0] != 201]
    to_exchange = [
        in_exchange[item] - sent for status, item, sent, _ in answers if status == 201 and item in in_exchange
    ]
    to_answer = [answered - sent for status, _, sent, answered in answers if status == 201]
    return {
        "creates": creates,
        "creates_per_s": round(creates / elapsed, 1),
        "failed": len(failed),
        "echoes": echoes,
        "latency_p50_ms": _ms(statistics.median(to_exchange)),
        "latency_p99_ms": _ms(statistics.quantiles(to_exchange, n=100)[98]),
        "answer_p50_ms": _ms(statistics.median(to_answer)),
        "answer_p99_ms": _ms(statistics.quantiles(to_answer, n=100)[98]),
    }


async def _create(
    session: aiohttp.ClientSession, address: str, body: dict[str, Any], key: str, due: float
) -> tuple[int, str, float, float]:
    await asyncio.sleep(max(0.0, due - time.perf_counter()))
    sent = time.perf_counter()
    async with session.post(
        f"/api/v1/mailboxes/{address}/appointments", json=body, headers={"Idempotency-Key": key}
    ) as response:
        answer = await response.json()
        return response.status, answer.get("exchange_id", ""), sent, time.perf_counter()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="creates per second")
    args = parser.parse_args()
    result = asyncio.run(measure(args.creates, args.rate))
    print(
        f"{result['creates']} creates at {result['creates_per_s']}/s over {MAILBOXES} mailboxes, Graph latency "
        f"{LATENCY_MS} ms; {result['failed']} failed; {result['echoes']} echoed to the workforce system"
    )
    print(f"request → event in Exchange: p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms")
    print(f"request → 201 answer:        p50 {result['answer_p50_ms']} ms, p99 {result['answer_p99_ms']} ms")
    print(json.dumps({key: result[key] for key in ("creates_per_s", "latency_p50_ms", "latency_p99_ms")}))


if __name__ == "__main__":
    main()
