"""Three `presence-bridge run` processes on one PostgreSQL database share the mailboxes (docs/running.md
"Several instances"): each mailbox is synced and delivered by one at a time, every change reaches the workforce
system once and in order, notifications to any instance lead to syncs, and a killed instance's mailboxes are
taken over well within the lease."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bridge.instances import instance_name
from bridge.store import Database, MailboxRow
from emulators.graph import GraphEmulator
from emulators.graph_log import concurrent_reads, users_read
from emulators.graph_model import AppRegistration
from emulators.harness import BridgeProcess, write_instance_configs
from emulators.workforce import WorkforceReceiver
from tests.conftest import POSTGRES_URL, WORKFORCE_SECRET, DatabaseUrl
from tests.world import at, wait_until

# PostgreSQL only: SQLite serves one instance. The fixture skips, saying so, when PostgreSQL does not answer.
on_postgresql = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

MAILBOXES = 12
# Slow enough that the work of the first start spreads over the instances.
LATENCY_MS = 300
# The takeover test needs one of the two instances Graph does not notify to hold a lease: the notified instance
# fills its `sync.concurrency` (8) places at once and claims again as soon as one frees, so its second wave must
# come after the others' next poll (1 s) for them to take part of the 12 mailboxes.
TAKEOVER_LATENCY_MS = 1200
# The sync lease (SyncTiming.lease): a takeover must come well before it runs out.
LEASE_S = 120


async def scrape(instance: BridgeProcess) -> str:
    instance.running()
    async with aiohttp.ClientSession() as session, session.get(f"{instance.url}/metrics") as response:
        return await response.text()


@dataclass
class Cluster:
    graph: GraphEmulator
    workforce: WorkforceReceiver
    instances: list[BridgeProcess]
    people: list[str]
    db: Database

    def changes_everywhere(self, round_: int) -> list[str]:
        """One new appointment in every mailbox at once; their subjects."""
        subjects = []
        for n, address in enumerate(self.people):
            subject = f"round {round_} {address}"
            event = {"subject": subject, "start": at(1 + round_, 8 + n % 8), "end": at(1 + round_, 9 + n % 8)}
            self.graph.create_event_as_outlook(address, event | {"showAs": "busy"})
            subjects.append(subject)
        return subjects

    async def arrived(self, subjects: list[str], within: float) -> None:
        def all_there() -> bool:
            return set(subjects) <= {change["appointment"].get("subject") for change in self.workforce.changes}

        await wait_until(all_there, within=within)

    def idle(self) -> bool:
        with self.db.session() as session:
            rows = session.exec(select(MailboxRow)).all()
            return len(rows) == MAILBOXES and all(
                row.last_synced_at is not None and row.dirty_generation == row.synced_generation for row in rows
            )


@pytest.fixture
async def cluster(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    workforce: WorkforceReceiver,
    database_url: DatabaseUrl,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    people = [f"person{n}@contoso.com" for n in range(MAILBOXES)]
    for address in people:
        graph_emulator.add_user(address)
    database = f"{POSTGRES_URL}?options=-csearch_path%3D{database_url.schema}"
    # Graph notifies the first instance only (one public URL): the others sync what it marks. Each instance syncs 4
    # mailboxes at once, so that a burst of MAILBOXES is shared out (at the default 32 the notified one takes it all).
    configs = write_instance_configs(
        tmp_path,
        3,
        graph=graph_emulator,
        app=tenant_app,
        workforce_url=workforce.url,
        secret=WORKFORCE_SECRET,
        database_url=database,
        mailboxes=[(address, f"E{n:03d}") for n, address in enumerate(people)],
        extra="sync: {concurrency: 4}\n",
    )
    instances = []
    try:
        for path, url in configs:
            instance = BridgeProcess(path, url, path.with_suffix(".log"))
            await instance.spawn()
            instances.append(instance)
            if len(instances) == 1:
                # The public URL is the first instance's: Graph's validation of a subscription any instance creates
                # goes there, and a failed creation waits five minutes (as behind a load balancer with no target).
                await instances[0].listening(within=60)
        db = Database(POSTGRES_URL, schema=database_url.schema)
        cluster = Cluster(graph_emulator, workforce, instances, people, db)
        await wait_until(lambda: len(graph_emulator.subscriptions()) >= MAILBOXES, within=90)
        await wait_until(cluster.idle, within=60)
        for instance in instances:
            await instance.listening(within=60)
        try:
            yield cluster
        finally:
            db.close()
    finally:
        for instance in instances:
            instance.terminate()
        for instance in instances:
            await instance.stopped()


def _name(metrics: str) -> str:
    found = re.search(r'presence_bridge_instance_info\{instance="([^"]+)"\}', metrics)
    assert found is not None, metrics
    return found[1]


def _syncs(metrics: str) -> float:
    return sum(float(m[1]) for m in re.finditer(r'presence_bridge_syncs_total\{source="online"\} (\S+)', metrics))


def _once_in_order(changes: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Changes delivered more than once, and mailboxes whose sequence numbers did not arrive 1, 2, 3, ..."""
    repeated = [change_id for change_id, count in Counter(c["id"] for c in changes).items() if count > 1]
    sequences: dict[str, list[int]] = defaultdict(list)
    for change in changes:
        sequences[change["mailbox"]].append(change["sequence"])
    disordered = [mailbox for mailbox, seen in sequences.items() if seen != list(range(1, len(seen) + 1))]
    return repeated, disordered


@on_postgresql
async def test_three_instances_share_the_mailboxes_and_deliver_each_change_once(cluster: Cluster) -> None:
    cluster.graph.set_latency(LATENCY_MS)
    cluster.graph.clear_stats()
    subjects = []
    for round_ in range(3):
        made = cluster.changes_everywhere(round_)
        await cluster.arrived(made, within=60)
        subjects += made

    assert len(cluster.graph.subscriptions()) == MAILBOXES  # one per mailbox, not one per instance
    delivered = [change["appointment"]["subject"] for change in cluster.workforce.changes]
    assert Counter(s for s in delivered if s in subjects) == Counter(subjects)
    assert _once_in_order(cluster.workforce.changes) == ([], [])
    log = cluster.graph.stats()["log"]
    assert len(users_read(log)) == MAILBOXES
    assert concurrent_reads(log) == {}
    scraped = [await scrape(instance) for instance in cluster.instances]
    names = [_name(metrics) for metrics in scraped]
    host = socket.gethostname()
    assert [name.rsplit(":", 1)[0] for name in names] == [f"{host}:{i.pid}" for i in cluster.instances]
    assert all(_syncs(metrics) > 0 for metrics in scraped), [_syncs(metrics) for metrics in scraped]


@on_postgresql
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
async def test_a_killed_instance_s_mailboxes_are_taken_over_within_the_lease(cluster: Cluster) -> None:
    cluster.graph.set_latency(TAKEOVER_LATENCY_MS)
    first = cluster.changes_everywhere(0)

    def leased() -> set[str]:
        with cluster.db.session() as session:
            return {row.lease_owner for row in session.exec(select(MailboxRow)).all() if row.lease_owner}

    # An instance syncing mailboxes of this round is killed mid-sync; not the one Graph notifies (a load balancer
    # would send notifications elsewhere; here nothing would).
    pids = {str(cluster.instances[n].pid): cluster.instances[n] for n in (1, 2)}
    await wait_until(lambda: any(owner.split(":")[1] in pids for owner in leased()), within=30)
    holder = next(owner for owner in sorted(leased()) if owner.split(":")[1] in pids)
    victim = pids[holder.split(":")[1]]
    await victim.kill()
    killed_at = asyncio.get_running_loop().time()
    second = cluster.changes_everywhere(1)

    await cluster.arrived(first + second, within=LEASE_S / 4)
    assert asyncio.get_running_loop().time() - killed_at < LEASE_S / 4

    changes = cluster.workforce.changes
    delivered = Counter(change["appointment"]["subject"] for change in changes)
    assert all(delivered[subject] >= 1 for subject in first + second)
    # A batch the killed instance had sent but not yet recorded may come again, under the same change id, in order.
    by_id: dict[str, dict[str, Any]] = {}
    for change in changes:
        assert by_id.setdefault(change["id"], change) == change
    assert len(by_id) == len({(c["mailbox"], c["sequence"]) for c in changes})
    _, disordered = _once_in_order(list({c["id"]: c for c in changes}.values()))
    assert disordered == []
    survivors = [i for i in cluster.instances if i is not victim]
    said = "".join(i.log.read_text(errors="replace") for i in survivors)
    assert f"taking over the work of instance(s) gone: {holder}" in said


def test_instance_names_differ_in_one_process_and_name_this_process() -> None:
    first, second = instance_name(), instance_name()
    assert first != second
    host, pid, random = first.split(":")
    assert (host, pid) == (socket.gethostname(), str(os.getpid()))
    assert len(random) == 6
