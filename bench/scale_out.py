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
answers 429 or 5xx + a request log too short to check. `speedup` is one_instance_s / three_instances_s.

Run: .venv/bin/python bench/scale_out.py [--mailboxes 300] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from emulators.harness import SECRET, BridgeProcess, write_instance_configs
from emulators.workforce import WorkforceReceiver

EVENTS = 40
LATENCY_MS = 100


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

    @property
    def errors(self) -> int:
        return self.lost + self.concurrent + self.duplicated + self.exited + self.refused + int(self.log_short)


async def run(instances: int, mailboxes: int, database: str, within: float) -> Run:
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
    workforce = WorkforceReceiver(SECRET)
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
    )
    bridges = [BridgeProcess(path, url, path.with_suffix(".log")) for path, url in configs]
    db = Database(database, schema=schema)
    arrived: dict[tuple[str, str], float] = {}
    watcher = asyncio.create_task(_watch(workforce, arrived))
    try:
        await asyncio.gather(*(bridge.start() for bridge in bridges))
        graph.clear_stats()
        await asyncio.to_thread(_enrol, db, people)
        enrolled = time.perf_counter()
        deadline = enrolled + within
        wanted = [("shown", subject) for subject in subjects]
        while time.perf_counter() < deadline and not (all(key in arrived for key in wanted) and _synced(db, mailboxes)):
            await asyncio.sleep(0.2)
        done = all(key in arrived for key in wanted) and _synced(db, mailboxes)
        seconds = max(arrived[key] for key in wanted) - enrolled if done else None
        stats = graph.stats()
        shown = [change["appointment"].get("subject") for change in workforce.changes]
        exited = sum(1 for bridge in bridges if bridge.process.returncode is not None)
        syncs = [await _syncs(bridge.url) for bridge in bridges]
    finally:
        watcher.cancel()
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
    )


async def _syncs(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("presence_bridge_syncs_total{"))


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
    args = parser.parse_args()
    if not _answers(args.database):
        sys.exit(f"PostgreSQL at {args.database} does not answer: scale-out needs a database the instances share")
    runs = [asyncio.run(run(instances, args.mailboxes, args.database, args.within)) for instances in (1, 3)]
    offered = f"{args.mailboxes} mailboxes × {EVENTS} appointments, Graph latency {LATENCY_MS} ms"
    for result in runs:
        achieved = f"{args.mailboxes / result.seconds:.1f} mailboxes/s" if result.seconds else "not done in time"
        print(
            f"{result.instances} instance(s), {offered}: {result.seconds} s ({achieved}); lost {result.lost}, "
            f"read twice at once {result.concurrent}, delivered twice {result.duplicated}, exited {result.exited}, "
            f"Graph 429/5xx {result.refused}; syncs by instance {result.syncs}"
        )
    one, three = runs
    summary: dict[str, Any] = {
        "mailboxes": args.mailboxes,
        "events_per_mailbox": EVENTS,
        "graph_latency_ms": LATENCY_MS,
        "one_instance_s": one.seconds,
        "three_instances_s": three.seconds,
        "speedup": round(one.seconds / three.seconds, 2) if one.seconds and three.seconds else None,
        "lost": one.lost + three.lost,
        "double_synced": one.concurrent + three.concurrent + one.duplicated + three.duplicated,
        "errors": one.errors + three.errors,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
