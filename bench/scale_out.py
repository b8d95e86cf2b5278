"""Scale-out: the first sync of N mailboxes × 40 events at 100 ms per Graph answer, on one and on three instances.

The Graph emulator (100 ms of simulated latency on every Graph answer, Graph's per-mailbox limits enforced) and
the workforce receiver run in this process; each bridge instance is `presence-bridge run` as a process of its
own (`emulators.harness.BridgeProcess`), all of them on one PostgreSQL database, a fresh schema per run. A run
starts the instances with no mailbox, waits until each answers, then enrols the N mailboxes in one transaction (as
`presence-bridge mailboxes add` does, without a process per mailbox) and times from that commit until every
mailbox has been synced and every one of its 40 appointments has reached the workforce system. The same
workload, in a fresh tenant and database, runs once with one instance and once with three.

Offered: N mailboxes × 40 appointments; achieved: mailboxes per second in each run. `lost`: appointments that
never reached the workforce system (either run); `double_synced`: mailboxes that the emulator saw read by two
delta reads at once (two instances syncing one mailbox: emulators/graph_log.py), plus appointments the
workforce system got more than once; `errors`: `lost` + `double_synced` + instances that exited + Graph
answers 429 or 5xx + a request log too short to check. `speedup` is one_instance_s / three_instances_s (computed).

Where the time goes, measured: every second from the enrolment on, each instance's syncs and the seconds they took
added up (its /metrics; their growth per second is the places in use), each instance's CPU, this process's (the
emulators') CPU, PostgreSQL's (every `postgres` process on the machine, other users' included) and the CPU the
machine left idle (all cores). After the run: each instance's and this process's resident memory (at the end and
at the peak, VmRSS and VmHWM) and the size of the bridge's tables with indexes and TOAST.

Run: .venv/bin/python bench/scale_out.py [--mailboxes 300] [--database postgresql://...] [--instances-only K]
     [--concurrency N (sync.concurrency of each instance)] [--within SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import sqlalchemy as sa
from e2e import _at, _watch
from psycopg import sql
from sqlmodel import col

from bridge.admin import add_mailbox
from bridge.store import Database, MailboxRow
from emulators.graph import GraphEmulator
from emulators.graph_log import concurrent_reads
from emulators.harness import (
    SECRET,
    BridgeProcess,
    cpu_seconds,
    cpu_seconds_named,
    machine_idle_seconds,
    resident_kb,
    write_instance_configs,
)
from emulators.workforce import WorkforceReceiver

EVENTS = 40
LATENCY_MS = 100


@dataclass(frozen=True)
class Sample:
    """Measured at `at` seconds after the enrolment: syncs each instance had made (/metrics), CPU seconds each
    instance, this process (the Graph emulator and the workforce receiver) and PostgreSQL (every `postgres`
    process on the machine, other users' included) had used since the enrolment."""

    at: float
    syncs: list[float]
    syncing_s: list[float]  # the seconds those syncs took, added up: over `at`, the places in use on average
    cpu: list[float]
    bench_cpu: float
    postgres_cpu: float
    idle: float  # CPU seconds the machine (all its cores) left unused since the enrolment, whoever else runs on it


@dataclass
class Run:
    instances: int
    seconds: float | None  # None: not done within the time allowed
    lost: int
    concurrent: int
    duplicated: int
    exited: int
    refused: int
    log_short: bool
    syncs: list[float]  # syncs each instance made (its /metrics)
    timeline: list[Sample]  # one a second from the enrolment on
    rss_mb: list[tuple[float, float]]  # each instance's resident memory at the end and at its peak
    bench_rss_mb: tuple[float, float]  # this process's (the emulators')
    schema_mb: float  # the bridge's tables with their indexes and TOAST, at the end

    @property
    def errors(self) -> int:
        return self.lost + self.concurrent + self.duplicated + self.exited + self.refused + int(self.log_short)


async def run(instances: int, mailboxes: int, database: str, within: float, concurrency: int | None) -> Run:
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-bench-"))
    schema = f"bench_scale_{uuid.uuid4().hex[:8]}"
    _execute(database, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    graph = GraphEmulator(ca_file=folder / "ca.pem")
    await graph.start()
    app = graph.add_app()
    people = [f"user{n}@contoso.com" for n in range(mailboxes)]
    for address in people:
        graph.add_user(address)
    subjects = _seed(graph, people)
    graph.set_latency(LATENCY_MS)
    workforce = WorkforceReceiver(SECRET, brief=True)
    workforce_url = await workforce.start()
    # No mailbox in the files: they are enrolled once every instance is up. Graph notifies the first instance.
    configs = write_instance_configs(
        folder,
        instances,
        graph=graph,
        app=app,
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=f"{database}?options=-csearch_path%3D{schema}",
        mailboxes=[],
        extra=f"sync: {{concurrency: {concurrency}}}\n" if concurrency else "",
    )
    bridges = [BridgeProcess(path, url, path.with_suffix(".log")) for path, url in configs]
    db = Database(database, schema=schema)
    arrived: dict[tuple[str, str], float] = {}
    watcher = asyncio.create_task(_watch(workforce, arrived))
    timeline: list[Sample] = []
    sampler: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(*(bridge.start() for bridge in bridges))
        graph.clear_stats()
        await asyncio.to_thread(_enrol, db, people)
        enrolled = time.perf_counter()
        sampler = asyncio.create_task(_sample(bridges, enrolled, timeline))
        deadline = enrolled + within
        wanted = [("shown", subject) for subject in subjects]

        async def done_yet() -> bool:
            # A count first: looking up every appointment five times a second took 7% of this process (py-spy at
            # 1,000 mailboxes), which serves Graph to the instances; the database is asked from a thread.
            return (
                len(arrived) >= len(wanted)
                and all(key in arrived for key in wanted)
                and await asyncio.to_thread(_synced, db, mailboxes)
            )

        while time.perf_counter() < deadline and not await done_yet():
            await asyncio.sleep(0.2)
        done = await done_yet()
        seconds = max(arrived[key] for key in wanted) - enrolled if done else None
        stats = graph.stats()
        shown = [change["appointment"].get("subject") for change in workforce.changes]
        exited = sum(1 for bridge in bridges if bridge.process.returncode is not None)
        syncs = [(await _syncs(bridge.url))[0] for bridge in bridges]
        rss_mb = [_mb(resident_kb(bridge.pid)) for bridge in bridges]
        bench_rss_mb = _mb(resident_kb(os.getpid()))
        schema_mb = _schema_mb(database, schema)
    finally:
        watcher.cancel()
        if sampler is not None:
            sampler.cancel()
        for bridge in bridges:
            await bridge.stop()
        db.close()
        await workforce.stop()
        await graph.stop()
        _execute(database, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    refused = sum(count for status, count in stats["byStatus"].items() if status == "429" or status.startswith("5"))
    return Run(
        instances=instances,
        seconds=None if seconds is None else round(seconds, 2),
        lost=sum(1 for key in wanted if key not in arrived),
        concurrent=len(concurrent_reads(stats["log"])),
        duplicated=len(shown) - len(set(shown)),
        exited=exited,
        refused=refused,
        log_short=stats["requests"] > len(stats["log"]),
        syncs=syncs,
        timeline=timeline,
        rss_mb=rss_mb,
        bench_rss_mb=bench_rss_mb,
        schema_mb=schema_mb,
    )


async def _sample(bridges: list[BridgeProcess], start: float, timeline: list[Sample]) -> None:
    """Append a `Sample` every second until cancelled."""
    base = [cpu_seconds(bridge.pid) for bridge in bridges]
    bench_base, postgres_base, idle_base = (
        cpu_seconds(os.getpid()),
        cpu_seconds_named("postgres"),
        machine_idle_seconds(),
    )
    while True:
        await asyncio.sleep(1.0)
        syncs = [await _syncs(bridge.url) for bridge in bridges]
        timeline.append(
            Sample(
                at=round(time.perf_counter() - start, 1),
                syncs=[count for count, _ in syncs],
                syncing_s=[round(seconds, 1) for _, seconds in syncs],
                cpu=[round(cpu_seconds(bridge.pid) - was, 2) for bridge, was in zip(bridges, base, strict=True)],
                bench_cpu=round(cpu_seconds(os.getpid()) - bench_base, 2),
                postgres_cpu=round(cpu_seconds_named("postgres") - postgres_base, 2),
                idle=round(machine_idle_seconds() - idle_base, 2),
            )
        )


def _mb(kb: tuple[int, int]) -> tuple[float, float]:
    return round(kb[0] / 1024, 1), round(kb[1] / 1024, 1)


def _schema_mb(url: str, schema: str) -> float:
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')"
    )
    with psycopg.connect(url) as connection:
        row = connection.execute(query, (schema,)).fetchone()
    return round(int(row[0] if row else 0) / 2**20, 1)


async def _syncs(url: str) -> tuple[float, float]:
    """The syncs the instance has made, and the seconds they took together (its /metrics)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()

    def total(prefix: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    return total("presence_bridge_syncs_total{"), total("presence_bridge_sync_seconds_sum{")


def _seed(graph: GraphEmulator, people: list[str]) -> list[str]:
    """40 busy appointments in each calendar over the next days; their subjects (each one shown once)."""
    tomorrow = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    subjects = []
    for address in people:
        for k in range(EVENTS):
            start = tomorrow + timedelta(days=k % 20, hours=8 + k // 20)
            subject = f"{address} {k}"
            event = {"subject": subject, "start": _at(start), "end": _at(start + timedelta(minutes=30))}
            graph.create_event_as_outlook(address, event | {"showAs": "busy"})
            subjects.append(subject)
    return subjects


def _enrol(db: Database, people: list[str]) -> None:
    now = datetime.now(UTC)
    with db.session() as session:
        for n, address in enumerate(people):
            add_mailbox(session, address, f"E{n:06d}", "online", now)


def _synced(db: Database, mailboxes: int) -> bool:
    with db.session() as session:
        query = sa.select(sa.func.count()).where(col(MailboxRow.last_synced_at).is_not(None))
        return int(session.execute(query).scalar_one()) >= mailboxes


def _execute(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=300)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test", help="a PostgreSQL URL")
    parser.add_argument("--within", type=float, default=900.0, help="seconds a run may take")
    parser.add_argument("--instances-only", type=int, metavar="K", help="only the run on K instances (no speedup then)")
    parser.add_argument("--concurrency", type=int, help="sync.concurrency of each instance (default: the bridge's)")
    args = parser.parse_args()
    if not _answers(args.database):
        sys.exit(f"PostgreSQL at {args.database} does not answer: scale-out needs a database the instances share")
    counts = (args.instances_only,) if args.instances_only else (1, 3)
    runs = {n: asyncio.run(run(n, args.mailboxes, args.database, args.within, args.concurrency)) for n in counts}
    offered = f"{args.mailboxes} mailboxes × {EVENTS} appointments, Graph latency {LATENCY_MS} ms"
    for result in runs.values():
        achieved = f"{args.mailboxes / result.seconds:.1f} mailboxes/s" if result.seconds else "not done in time"
        print(
            f"{result.instances} instance(s), {offered}: {result.seconds} s ({achieved}); lost {result.lost}, "
            f"read twice at once {result.concurrent}, delivered twice {result.duplicated}, exited {result.exited}, "
            f"Graph 429/5xx {result.refused}; syncs by instance {result.syncs}; resident MB (end, peak) by instance "
            f"{result.rss_mb}, bench process {result.bench_rss_mb}; schema {result.schema_mb} MB"
        )
        print(
            "  s after enrolment: syncs by instance | their seconds added up | CPU s by instance | bench CPU s "
            "| PostgreSQL CPU s | machine idle CPU s"
        )
        for sample in result.timeline:
            print(
                f"  {sample.at:6.1f}: {sample.syncs} | {sample.syncing_s} | {sample.cpu} | {sample.bench_cpu} "
                f"| {sample.postgres_cpu} | {sample.idle}"
            )
    summary: dict[str, Any] = {
        "mailboxes": args.mailboxes,
        "sync_concurrency": args.concurrency or "default",
        "events_per_mailbox": EVENTS,
        "graph_latency_ms": LATENCY_MS,
    }
    if 1 in runs and 3 in runs:
        one, three = runs[1].seconds, runs[3].seconds
        summary |= {
            "one_instance_s": one,
            "three_instances_s": three,
            "speedup": round(one / three, 2) if one and three else None,  # computed: one_instance_s / three
        }
    summary |= {
        "runs": [_figures(result) for result in runs.values()],
        "lost": sum(result.lost for result in runs.values()),
        "double_synced": sum(result.concurrent + result.duplicated for result in runs.values()),
        "errors": sum(result.errors for result in runs.values()),
    }
    print(json.dumps(summary))


def _figures(result: Run) -> dict[str, Any]:
    last = result.timeline[-1] if result.timeline else None
    return {
        "instances": result.instances,
        "seconds": result.seconds,
        "syncs_by_instance": result.syncs,
        # CPU from the enrolment to the last sample (at most a second before the end)
        "cpu_s_by_instance": last.cpu if last else None,
        "syncing_s_by_instance": last.syncing_s if last else None,
        "bench_cpu_s": last.bench_cpu if last else None,
        "postgres_cpu_s": last.postgres_cpu if last else None,
        "machine_idle_cpu_s": last.idle if last else None,
        "machine_cores": os.cpu_count(),
        "rss_mb_by_instance": [end for end, _ in result.rss_mb],
        "rss_peak_mb_by_instance": [peak for _, peak in result.rss_mb],
        "bench_rss_mb": result.bench_rss_mb[0],
        "bench_rss_peak_mb": result.bench_rss_mb[1],
        "schema_mb": result.schema_mb,
    }


if __name__ == "__main__":
    main()
