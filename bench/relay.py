"""Workforce command → event in Exchange: latency at a steady rate of creates through the REST API.

Three processes, as in production: the Graph emulator (standing in for Exchange Online, with 20 ms of simulated
latency on every Graph answer), the bridge (`presence-bridge run`, default timing, SQLite unless --database
names a PostgreSQL URL), and this one, the workforce system: its webhook receiver and the client. Creates
are POSTed to /api/v1/mailboxes/{m}/appointments at a fixed rate, open loop (each request is due at a fixed time
and leaves then, whether or not earlier ones were answered), spread over 20 mailboxes. The latency is from the
request's scheduled time to the 201 (a request that leaves late, because this process fell behind, counts its
lateness too): the event is in Exchange before the answer leaves, so this bounds create → event in Exchange from
above (it also covers the bridge recording Exchange's answer). The writes' notifications and delta reads run
meanwhile, as in production; the receiver must get no echo of them: echoes and failed creates are errors.
`bridge_cpu_ms_per_create` is the bridge process's CPU time (user + system, /proc) from the first create until
their echoes have come back and been recognised, over the creates: the latency's tail is CPU queueing on the
bridge's event loop and database thread, and CPU is what a shared machine measures steadily.

`--syncing N` adds N more mailboxes of 40 appointments each to the bridge's configuration: their first sync (and
the delivery of its changes) runs while the creates are sent, as when the bridge starts on a large tenant.

Run: .venv/bin/python bench/relay.py [--creates 1000] [--rate 100] [--database URL] [--syncing 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import sqlalchemy as sa

from bridge.config import load_config
from emulators.harness import SECRET, BridgeProcess, GraphAt, cpu_seconds, free_port, write_config
from emulators.workforce import WorkforceReceiver

MAILBOXES = 20
LATENCY_MS = 20
TOKEN = "bench-relay-token-0123456789"


async def measure(creates: int, rate: float, database: str, syncing: int = 0) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-bench-"))
    people = [f"user{n}@contoso.com" for n in range(MAILBOXES)]
    bulk = [f"bulk{n}@contoso.com" for n in range(syncing)]
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.graph",
        "--port=0",
        f"--ca-file={folder / 'ca.pem'}",
        *(f"--user={address}" for address in people + bulk),
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,  # its first line lists every user: more than asyncio's 64 KiB with --syncing 1000
    )
    assert emulator.stdout is not None
    line = b""
    while not line.startswith(b"{"):
        line = await emulator.stdout.readline()
    tenant = json.loads(line)
    await _seed(tenant, bulk)
    workforce = WorkforceReceiver(SECRET)
    workforce_url = await workforce.start()
    path = write_config(
        folder / "config.yaml",
        graph=GraphAt(tenant["authority"], tenant["graphUrl"], tenant["caFile"]),
        app=SimpleNamespace(
            tenant_id=tenant["tenantId"], client_id=tenant["clientId"], client_secret=tenant["clientSecret"]
        ),
        port=free_port(),
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=f"sqlite:///{folder / 'bridge.db'}" if database == "sqlite" else database,
        mailboxes=[(address, f"E{n:05d}") for n, address in enumerate(people + bulk)],
        extra=f"api_tokens:\n  - {{name: bench, token: {TOKEN}, scopes: [workforce]}}\n",
    )
    config = load_config(path)
    schema = None if database == "sqlite" else f"bench_{uuid.uuid4().hex[:8]}"
    if schema is not None:
        _create_schema(database, schema)
        path.write_text(path.read_text().replace(database, f"{database}?options=-csearch_path%3D{schema}"))
    url = f"http://127.0.0.1:{config.listen.port}"
    bridge = BridgeProcess(path, url, folder / "bridge.log")
    control = tenant["controlUrl"]
    try:
        await bridge.start()
        trusting = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=tenant["caFile"]))
        async with aiohttp.ClientSession(connector=trusting) as session:
            while len(await _get(session, f"{control}/subscriptions")) < MAILBOXES:
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # the catch-up syncs after subscribing
            await session.put(f"{control}/latency", json={"ms": LATENCY_MS})
        tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        connector = aiohttp.TCPConnector(limit=0)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        cpu_before = cpu_seconds(bridge.pid)
        async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:
            started = time.perf_counter()
            tasks = []
            for index in range(creates):
                start = tomorrow + timedelta(days=index % 30, minutes=index)
                end = start + timedelta(minutes=30)
                body = {"template": "meeting", "start": start.isoformat(), "end": end.isoformat()}
                due = started + index / rate
                tasks.append(asyncio.create_task(_create(session, people[index % MAILBOXES], body, index, due)))
            answers = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
        await asyncio.sleep(3.0)  # let the writes' notifications and delta reads come back
        cpu_s = cpu_seconds(bridge.pid) - cpu_before
        # The bulk mailboxes' own appointments are no echoes: only changes of the mailboxes written to are.
        echoes = sum(1 for change in workforce.changes if change["mailbox"] in people)
        synced_meanwhile = len({change["mailbox"] for change in workforce.changes} - set(people))
    finally:
        await bridge.stop()
        await workforce.stop()
        emulator.terminate()
        await emulator.wait()
        if schema is not None:
            _drop(database, schema)
    latencies = [answered - due for status, due, _, answered in answers if status == 201]
    lateness = [sent - due for _, due, sent, _ in answers]
    failed = Counter(str(status) for status, _, _, _ in answers if status != 201)
    return {
        "creates": creates,
        "offered_creates_per_s": rate,
        "achieved_creates_per_s": round(len(latencies) / elapsed, 1),
        "send_lag_p99_ms": _ms(statistics.quantiles(lateness, n=100)[98]),
        "failed": sum(failed.values()),
        "failed_by_status": dict(failed),
        "echoes": echoes,
        "syncing_mailboxes": syncing,
        "synced_meanwhile": synced_meanwhile,
        "latency_p50_ms": _ms(statistics.median(latencies)) if latencies else None,
        "latency_p99_ms": _ms(statistics.quantiles(latencies, n=100)[98]) if len(latencies) > 1 else None,
        "bridge_cpu_s": round(cpu_s, 2),
        "bridge_cpu_ms_per_create": round(cpu_s * 1000 / creates, 2),
    }


async def _seed(tenant: dict[str, Any], bulk: list[str]) -> None:
    """40 appointments in each bulk mailbox, through the emulator's control API."""
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    trusting = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=tenant["caFile"]), limit=32)
    async with aiohttp.ClientSession(connector=trusting) as session:

        async def fill(address: str) -> None:
            for k in range(40):
                start = tomorrow + timedelta(days=k % 20, hours=8 + k // 20)
                event = {
                    "subject": f"{address} {k}",
                    "showAs": "busy",
                    "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                    "end": {
                        "dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                        "timeZone": "UTC",
                    },
                }
                async with session.post(f"{tenant['controlUrl']}/users/{address}/events", json=event) as response:
                    response.raise_for_status()

        for start in range(0, len(bulk), 32):
            await asyncio.gather(*(fill(address) for address in bulk[start : start + 32]))


def _create_schema(url: str, schema: str) -> None:
    _execute(url, f'CREATE SCHEMA "{schema}"')


def _drop(url: str, schema: str) -> None:
    _execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(statement))
    engine.dispose()


async def _get(session: aiohttp.ClientSession, url: str) -> list[Any]:
    async with session.get(url) as response:
        return list((await response.json())["value"])


async def _create(
    session: aiohttp.ClientSession, address: str, body: dict[str, Any], index: int, due: float
) -> tuple[int, float, float, float]:
    """The status, when the request was due, when it left, when it was answered (0: no answer)."""
    await asyncio.sleep(max(0.0, due - time.perf_counter()))
    sent = time.perf_counter()
    key = {"Idempotency-Key": f"bench-{index}"}
    try:
        async with session.post(f"/api/v1/mailboxes/{address}/appointments", json=body, headers=key) as response:
            await response.read()
            return response.status, due, sent, time.perf_counter()
    except aiohttp.ClientError:
        return 0, due, sent, time.perf_counter()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="creates per second")
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a file in a temporary folder) or a postgresql:// URL"
    )
    parser.add_argument("--syncing", type=int, default=0, help="more mailboxes whose first sync runs meanwhile")
    args = parser.parse_args()
    result = asyncio.run(measure(args.creates, args.rate, args.database, args.syncing))
    print(
        f"{result['creates']} creates over {MAILBOXES} mailboxes ({args.database}), Graph latency {LATENCY_MS} ms: "
        f"offered {result['offered_creates_per_s']}/s, achieved {result['achieved_creates_per_s']}/s "
        f"(requests left p99 {result['send_lag_p99_ms']} ms behind schedule); {result['failed']} failed "
        f"{result['failed_by_status']}; {result['echoes']} echoed to the workforce system; meanwhile "
        f"{result['synced_meanwhile']} of {args.syncing} more mailboxes had their first sync delivered"
    )
    print(
        f"scheduled request → 201 (the event is in Exchange by then): p50 {result['latency_p50_ms']} ms, "
        f"p99 {result['latency_p99_ms']} ms; bridge CPU {result['bridge_cpu_s']} s "
        f"({result['bridge_cpu_ms_per_create']} ms per create)"
    )
    print(json.dumps({**result, "errors": result["failed"] + result["echoes"]}))


if __name__ == "__main__":
    main()
