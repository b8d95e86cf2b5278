"""The first start with many mailboxes, and a window roll of all of them while people change their calendars.

The Graph emulator (N mailboxes × 40 events over the mapped window, 20 ms of simulated latency on every Graph
answer, Graph's limits enforced: 4 concurrent requests and 10,000 requests per 10 minutes per app and mailbox)
and the workforce receiver run in this process; the bridge runs as its own process (`presence-bridge run`,
default settings, SQLite or `--database`), so that its CPU time and memory are its own.

1. Naive: a plain sequential msgraph-sdk loop reads the calendars (`calendarView`, `$top=1000`, decoded into the
   SDK's models as a program written without care would) of a sample of the mailboxes, before the bridge starts.
2. Initial sync: the bridge starts with all N mailboxes configured. `initial_sync_s` runs from the process's start
   until every mailbox has committed its first sync (read from the bridge's database), `subscriptions_s` until
   the emulator holds N subscriptions, `delivered_s` until the workforce system got all N × 40 changes.
   `bridge_cpu_ms_per_mailbox` is the process's CPU time (user + system, /proc) from listening to all of that
   done, over N; `rss_kb_per_mailbox` the growth of its resident memory over the same span, over N.
3. Roll: every mailbox's delta round is moved to the day before in the database, as at 00:00 UTC; once the
   bridge's due check has marked them, people change appointments (`--roll-rate` per second, one mailbox each,
   at random) until the roll is over. `notified_p99_s_during_roll` is the 99th percentile of the time from each
   change to its arrival at the workforce system.

The naive loop's time for N is projected from its sample (`naive_projected_s`): that projection is what
`ratio_vs_naive` divides by the bridge's measured `initial_sync_s`. `errors` counts what went wrong: changes not
delivered, roll changes not delivered, 429 answers Graph gave, mailboxes not synced.

Run: .venv/bin/python bench/initial_sync.py [--mailboxes 10000] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import ssl
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import psycopg
import sqlalchemy as sa
from azure.identity.aio import ClientSecretCredential
from e2e import _watch
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import CalendarViewRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from psycopg import sql

from emulators.graph import GraphEmulator
from emulators.harness import SECRET, BridgeProcess, cpu_seconds, free_port, resident_kb, write_config
from emulators.workforce import WorkforceReceiver

EVENTS = 40
DAYS = 80  # inside the shipped mapping's 90 days ahead


@dataclass
class Figures:
    started: float = 0.0
    listening: float = 0.0
    synced: float | None = None
    subscribed: float | None = None
    delivered: float | None = None
    cpu_listening_s: float = 0.0
    cpu_done_s: float = 0.0
    rss_listening_kb: int = 0
    rss_done_kb: int = 0


def _at(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def populate(graph: GraphEmulator, addresses: list[str], rng: random.Random) -> dict[str, list[str]]:
    """40 busy appointments per mailbox over the next 80 days; their ids by mailbox."""
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    ids: dict[str, list[str]] = {}
    for address in addresses:
        graph.add_user(address)
        ids[address] = []
        for n in range(EVENTS):
            start = tomorrow + timedelta(days=rng.randrange(DAYS), hours=rng.randint(7, 17))
            event = {"subject": f"work {n}", "start": _at(start), "end": _at(start + timedelta(hours=1))}
            ids[address].append(str(graph.create_event_as_outlook(address, event | {"showAs": "busy"})["id"]))
    return ids


async def naive(graph: GraphEmulator, app: Any, sample: list[str]) -> float:
    """Milliseconds per mailbox of a sequential msgraph-sdk calendarView loop ($top=1000) over `sample`."""
    credential = ClientSecretCredential(
        app.tenant_id,
        app.client_id,
        app.client_secret,
        authority=graph.authority,
        connection_verify=str(graph.ca_file),
    )
    host = urlsplit(graph.graph_url).hostname or ""
    auth = AzureIdentityAuthenticationProvider(credential, allowed_hosts=[host])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(graph.ca_file)))
    )
    adapter = GraphRequestAdapter(auth, http)
    adapter.base_url = graph.graph_url
    client = GraphServiceClient(request_adapter=adapter)
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    query = CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
        start_date_time=today.isoformat(), end_date_time=(today + timedelta(days=90)).isoformat(), top=1000
    )
    config = RequestConfiguration(query_parameters=query)
    await client.users.by_user_id(sample[0]).calendar_view.get(config)  # the token, once
    began = time.perf_counter()
    read = 0
    for address in sample:
        page = await client.users.by_user_id(address).calendar_view.get(config)
        read += len(page.value or []) if page is not None else 0
    elapsed = time.perf_counter() - began
    await http.aclose()
    await credential.close()
    if read != EVENTS * len(sample):
        raise RuntimeError(f"the naive loop read {read} events, not {EVENTS * len(sample)}")
    return elapsed * 1000 / len(sample)


def database(url: str | None, folder: Path) -> tuple[str, str | None]:
    """The config's database URL, and on PostgreSQL the new schema it uses (dropped at the end)."""
    if url is None:
        return f"sqlite:///{folder / 'bridge.db'}", None
    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{url}?options={quote(f'-csearch_path={schema}')}", schema


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _count(engine: sa.Engine, query: str | sa.TextClause) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(query) if isinstance(query, str) else query).scalar_one())


async def initial_sync(
    bridge: BridgeProcess, graph: GraphEmulator, workforce: WorkforceReceiver, engine: sa.Engine, n: int, within: float
) -> Figures:
    figures = Figures(started=time.perf_counter())
    await bridge.start()
    assert bridge.process is not None
    pid = bridge.process.pid
    figures.listening = time.perf_counter()
    figures.cpu_listening_s, figures.rss_listening_kb = cpu_seconds(pid), resident_kb(pid)[0]
    deadline = figures.started + within
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if figures.subscribed is None and len(graph.state.live_subscriptions()) >= n:
            figures.subscribed = now
        if (
            figures.synced is None
            and _count(engine, "SELECT count(*) FROM mailbox WHERE last_synced_at IS NOT NULL") >= n
        ):
            figures.synced = now
        if figures.delivered is None and len(workforce.changes) >= n * EVENTS:
            figures.delivered = now
        if figures.subscribed and figures.synced and figures.delivered:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the last commits and the catch-up reads after subscribing
    figures.cpu_done_s, figures.rss_done_kb = cpu_seconds(pid), resident_kb(pid)[0]
    return figures


async def roll(
    graph: GraphEmulator,
    workforce: WorkforceReceiver,
    engine: sa.Engine,
    ids: dict[str, list[str]],
    rate: float,
    within: float,
) -> tuple[list[float], int, float]:
    """Move every round to yesterday, wait for the bridge to mark them, change calendars while it rolls.

    Returns the latencies of the changes that arrived, how many did not, and how long the roll took.
    """
    n = len(ids)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE delta_state SET window_start = window_start - interval '1 day'")
            if engine.dialect.name == "postgresql"
            else sa.text("UPDATE delta_state SET window_start = datetime(window_start, '-1 day')")
        )
    dirty = "SELECT count(*) FROM mailbox WHERE dirty_generation > synced_generation"
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    # SQLite holds UTC wall times as text ("YYYY-MM-DD HH:MM:SS.ffffff"), which compares in order.
    since = today if engine.dialect.name == "postgresql" else today.strftime("%Y-%m-%d %H:%M:%S")
    rolling = sa.text("SELECT count(*) FROM delta_state WHERE window_start < :today").bindparams(today=since)
    deadline = time.perf_counter() + 90  # the due check runs once a minute
    while _count(engine, dirty) < n // 2:
        if time.perf_counter() > deadline:
            raise RuntimeError("the bridge did not mark the rolled mailboxes within 90 s")
        await asyncio.sleep(0.1)
    began = time.perf_counter()
    rng = random.Random(7)
    made: dict[str, float] = {}
    # Each change is timed as it reaches the workforce system, while the roll goes on: not when the roll is over.
    arrived: dict[tuple[str, str], float] = {}
    watcher = asyncio.create_task(_watch(workforce, arrived))
    index = 0
    ended: float | None = None
    while time.perf_counter() - began < within:
        scheduled = began + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        address = rng.choice(list(ids))
        subject = f"roll change {index}"
        graph.update_event_as_outlook(address, rng.choice(ids[address]), {"subject": subject})
        made[subject] = scheduled
        index += 1
        if index % max(1, int(rate)) == 0 and _count(engine, rolling) == 0:
            ended = time.perf_counter()
            break
    wait_until = time.perf_counter() + 30
    while any(("shown", subject) not in arrived for subject in made) and time.perf_counter() < wait_until:
        await asyncio.sleep(0.05)
    watcher.cancel()
    latencies = [arrived[("shown", subject)] - at for subject, at in made.items() if ("shown", subject) in arrived]
    return latencies, len(made) - len(latencies), (ended or time.perf_counter()) - began


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-initial-sync-"))
    rng = random.Random(1)
    graph = GraphEmulator(ca_file=folder / "graph-ca.pem")
    await graph.start()
    workforce = WorkforceReceiver(SECRET, brief=True)
    workforce_url = await workforce.start()
    app = graph.add_app()
    addresses = [f"user{n}@contoso.com" for n in range(args.mailboxes)]
    ids = populate(graph, addresses, rng)
    graph.set_latency(args.latency_ms)
    sample = rng.sample(addresses, min(args.naive_sample, len(addresses)))
    naive_ms = await naive(graph, app, sample)
    graph.clear_stats()
    database_url, schema = database(args.database, folder)
    port = free_port()
    config = write_config(
        folder / "config.yaml",
        graph=graph,
        app=app,
        port=port,
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=database_url,
        mailboxes=[(address, f"E{n:05d}") for n, address in enumerate(addresses)],
        extra="" if args.concurrency is None else f"sync: {{concurrency: {args.concurrency}}}\n",
    )
    bridge = BridgeProcess(config, f"http://127.0.0.1:{port}", folder / "bridge.log")
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        figures = await initial_sync(bridge, graph, workforce, engine, args.mailboxes, args.within)
        first = graph.stats(log_limit=0)
        latencies: list[float] = []
        lost, roll_s = 0, 0.0
        if args.roll_rate > 0:
            latencies, lost, roll_s = await roll(graph, workforce, engine, ids, args.roll_rate, args.within)
        stats = graph.stats(log_limit=0)
    finally:
        await bridge.stop()
        engine.dispose()
        await workforce.stop()
        await graph.stop()
        if schema is not None and args.database is not None:
            drop_schema(args.database, schema)
    return figures_json(args, figures, first, stats, naive_ms, latencies, lost, roll_s, workforce)


def _since(figures: Figures, moment: float | None) -> float | None:
    return None if moment is None else round(moment - figures.started, 2)


def figures_json(
    args: argparse.Namespace,
    figures: Figures,
    first: dict[str, Any],
    stats: dict[str, Any],
    naive_ms: float,
    latencies: list[float],
    lost: int,
    roll_s: float,
    workforce: WorkforceReceiver,
) -> dict[str, Any]:
    n = args.mailboxes
    initial = _since(figures, figures.synced)
    naive_projected_s = naive_ms * n / 1000
    unsynced = 0 if figures.synced else 1
    undelivered = max(0, n * EVENTS - len([c for c in workforce.changes if c["type"] == "appointment.created"]))
    throttled = int(stats["byStatus"].get("429", 0))
    return {
        "mailboxes": n,
        "events_per_mailbox": EVENTS,
        "graph_latency_ms": args.latency_ms,
        "database": "postgresql" if args.database else "sqlite",
        "sync_concurrency": args.concurrency,
        "startup_s": round(figures.listening - figures.started, 2),
        "initial_sync_s": initial,
        "subscriptions_s": _since(figures, figures.subscribed),
        "delivered_s": _since(figures, figures.delivered),
        "bridge_cpu_s": round(figures.cpu_done_s - figures.cpu_listening_s, 2),
        "bridge_cpu_ms_per_mailbox": round((figures.cpu_done_s - figures.cpu_listening_s) * 1000 / n, 2),
        "rss_listening_kb": figures.rss_listening_kb,
        "rss_done_kb": figures.rss_done_kb,
        "rss_kb_per_mailbox": round((figures.rss_done_kb - figures.rss_listening_kb) / n, 2),
        "naive_sample": min(args.naive_sample, n),
        "naive_sdk_ms_per_mailbox": round(naive_ms, 1),
        "naive_projected_s": round(naive_projected_s, 1),
        "ratio_vs_naive": round(naive_projected_s / initial, 1) if initial else None,
        "graph_requests_initial": first["requests"],
        "graph_requests_by_route": {route: count for route, count in first["byRoute"].items() if count},
        "peak_concurrency_per_mailbox": max(stats["peakConcurrency"].values(), default=0),
        "graph_429": throttled,
        "roll_s": round(roll_s, 2),
        "roll_changes": len(latencies) + lost,
        "offered_roll_changes_per_s": args.roll_rate,
        "notified_p50_s_during_roll": round(statistics.median(latencies), 3) if latencies else None,
        "notified_p99_s_during_roll": round(statistics.quantiles(latencies, n=100)[98], 3)
        if len(latencies) > 1
        else None,
        "error_kinds": {
            "changes_undelivered": undelivered,
            "roll_changes_not_arrived_within_30_s": lost,
            "graph_429": throttled,
            "not_all_synced": unsynced,
        },
        "errors": undelivered + lost + throttled + unsynced,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every Graph answer")
    parser.add_argument("--database", help="postgresql://… (a new schema, dropped afterwards); default SQLite")
    parser.add_argument("--naive-sample", type=int, default=50, help="mailboxes the naive loop reads")
    parser.add_argument(
        "--roll-rate", type=float, default=5.0, help="calendar changes per second during the roll (0: no roll)"
    )
    parser.add_argument("--concurrency", type=int, help="the bridge's sync.concurrency (default: its own)")
    parser.add_argument("--within", type=float, default=900.0, help="give up on a phase after this many seconds")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"{result['mailboxes']} mailboxes × {EVENTS} events, Graph latency {args.latency_ms:g} ms, "
        f"{result['database']}: bridge listening after {result['startup_s']} s; every mailbox synced after "
        f"{result['initial_sync_s']} s, subscribed after {result['subscriptions_s']} s, every change delivered after "
        f"{result['delivered_s']} s"
    )
    print(
        f"bridge CPU {result['bridge_cpu_s']} s ({result['bridge_cpu_ms_per_mailbox']} ms per mailbox); resident "
        f"memory {result['rss_listening_kb']} KB listening, {result['rss_done_kb']} KB after "
        f"({result['rss_kb_per_mailbox']} KB per mailbox)"
    )
    print(
        f"naive sequential SDK loop: {result['naive_sdk_ms_per_mailbox']} ms per mailbox over "
        f"{result['naive_sample']}, projected {result['naive_projected_s']} s for all: {result['ratio_vs_naive']}× "
        f"the bridge's time"
    )
    print(
        f"Graph: {result['graph_requests_initial']} requests for the first start {result['graph_requests_by_route']}, "
        f"peak {result['peak_concurrency_per_mailbox']} in flight per mailbox, {result['graph_429']} answered 429"
    )
    print(
        f"roll of every mailbox: {result['roll_s']} s; {result['roll_changes']} changes offered at "
        f"{args.roll_rate:g}/s meanwhile, p50 {result['notified_p50_s_during_roll']} s, p99 "
        f"{result['notified_p99_s_during_roll']} s to the workforce system"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
