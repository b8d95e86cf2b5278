"""`presence-bridge run` as an operator runs it: a separate process, stopped by SIGTERM, or killed outright."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from bridge.emulators.graph import GraphEmulator
from bridge.emulators.graph_model import DirectoryUser
from bridge.emulators.workforce import WorkforceReceiver


def _at(days: int, hour: float) -> dict[str, str]:
    moment = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


async def start_bridge(config_path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "--config", str(config_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def subscribed(graph: GraphEmulator) -> None:
    for _ in range(300):
        if graph.subscriptions():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the bridge did not subscribe within 30 s")


async def test_sigterm_stops_the_bridge_cleanly(config_path: Path, graph_emulator: GraphEmulator) -> None:
    bridge = await start_bridge(config_path)
    await subscribed(graph_emulator)

    bridge.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        code = await bridge.wait()

    assert bridge.stderr is not None
    errors = (await bridge.stderr.read()).decode()
    assert code == 0, errors
    assert "Traceback" not in errors


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
async def test_killed_mid_burst_and_restarted_nothing_is_lost(
    config_path: Path, graph_emulator: GraphEmulator, workforce: WorkforceReceiver, adele: DirectoryUser
) -> None:
    bridge = await start_bridge(config_path)
    await subscribed(graph_emulator)
    burst = 40
    for n in range(burst):
        event = {
            "subject": f"Burst {n}",
            "start": _at(1 + n % 10, 8 + n % 8),
            "end": _at(1 + n % 10, 9 + n % 8),
            "showAs": "busy",
        }
        graph_emulator.create_event_as_outlook(adele.user_principal_name, event)
        if n == burst // 4:
            await workforce.wait_for(1, within=20)  # the burst is flowing: kill it in the middle
            os.kill(bridge.pid, signal.SIGKILL)
            await bridge.wait()
    assert len({c["appointment"]["subject"] for c in workforce.changes}) < burst

    bridge = await start_bridge(config_path)  # notifications sent while it was down were lost: reconcile on start
    try:
        await workforce.wait_for(burst, within=60)
    finally:
        bridge.terminate()
        await bridge.wait()

    subjects = [c["appointment"]["subject"] for c in workforce.changes]
    assert sorted(subjects) == sorted(f"Burst {n}" for n in range(burst))  # every change, each once
    assert workforce.anomalies == []  # sequence numbers stayed in order across the crash
