"""The request-log reading that finds two syncs of one mailbox at once (emulators/graph_log.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from emulators.graph import GraphEmulator
from emulators.graph_log import concurrent_reads, users_read
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.emulators.graph_helpers import GraphHttp


def _read(user: str, answered: str, ms: float, route: str = "delta") -> dict[str, Any]:
    return {"route": route, "user": user, "time": answered, "ms": ms}


def test_reads_one_after_another_are_not_concurrent_and_overlapping_ones_are() -> None:
    log = [
        _read("a", "2026-11-30T10:00:00.1000000Z", 100),  # 10:00:00.0 - .1
        _read("a", "2026-11-30T10:00:00.2000000Z", 100),  # .1 - .2: begins as the first is answered
        _read("b", "2026-11-30T10:00:00.3000000Z", 100),  # .2 - .3
        _read("b", "2026-11-30T10:00:00.3500000Z", 100),  # .25 - .35: began while the one before was under way
        _read("c", "2026-11-30T10:00:00.3000000Z", 300, route="event"),  # another route
        _read("c", "2026-11-30T10:00:00.3000000Z", 300, route="event"),
    ]
    assert concurrent_reads(log) == {"b": 1}
    assert concurrent_reads(log, route="event") == {"c": 1}
    assert users_read(log) == {"a", "b"}


async def test_the_emulator_s_own_log_shows_reads_at_once(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser, graph: GraphHttp
) -> None:
    delta = (
        f"/v1.0/users/{adele.id}/calendarView/delta?startDateTime=2026-11-30T00:00:00Z&endDateTime=2026-12-07T00:00:00Z"
    )
    graph_emulator.set_latency(100)
    for _ in range(2):
        assert (await graph.get(delta)).status == 200
    stats = graph_emulator.stats()
    assert users_read(stats["log"]) == {adele.user_principal_name}
    assert stats["peakConcurrency"] == {adele.user_principal_name: 1}
    assert concurrent_reads(stats["log"]) == {}

    # Two reads sent together overlap only if the second reaches the emulator within the first one's latency; it
    # opens a new TLS connection, handshaken on this same event loop, which a loaded machine can delay past that.
    # The emulator's own count of requests under way says when they did overlap: the log reading must agree.
    async with asyncio.timeout(60):
        while graph_emulator.stats()["peakConcurrency"][adele.user_principal_name] < 2:
            answers = await asyncio.gather(graph.get(delta), graph.get(delta))
            assert [answer.status for answer in answers] == [200, 200]
    assert concurrent_reads(graph_emulator.stats()["log"][-2:]) == {adele.user_principal_name: 1}
