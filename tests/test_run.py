"""`presence-bridge run` as an operator runs it: a separate process, stopped by SIGTERM, or killed outright."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from bridge.config import load_config
from emulators.ews import EwsEmulator
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from emulators.harness import OnPrem
from emulators.workforce import WorkforceReceiver
from tests.conftest import free_port, run_config
from tests.world import ONPREM_MAILBOX, SERVICE_ACCOUNT, wait_until


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


async def test_sigterm_exits_within_ten_seconds_whatever_is_open(
    tmp_path: Path,
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    workforce: WorkforceReceiver,
) -> None:
    async with EwsEmulator(ca_file=tmp_path / "ews-ca.pem", keepalive_interval=0.5) as ews:
        ews.add_mailbox(ONPREM_MAILBOX, "Nestor Wilke")
        ews.add_service_account(*SERVICE_ACCOUNT)
        port = free_port()
        onprem = OnPrem(ews.url, ews.ca_file, *SERVICE_ACCOUNT, [(ONPREM_MAILBOX, "E2001")])
        config_path = run_config(tmp_path, graph_emulator, tenant_app, adele, workforce, port, onprem)
        bridge = await start_bridge(config_path)
        await subscribed(graph_emulator)
        await wait_until(lambda: any(s["connected"] for s in ews.subscriptions()), within=30)
        # Clients in the middle of a request: headers half sent, a body half sent.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        held[0][1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        held[1][1].write(b"POST /hooks/graph HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")

        started = asyncio.get_running_loop().time()
        bridge.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await bridge.wait()
        took = asyncio.get_running_loop().time() - started
        for _, writer in held:
            writer.close()

    assert bridge.stderr is not None
    errors = (await bridge.stderr.read()).decode()
    assert code == 0, errors
    assert took < 10, errors
    assert "Traceback" not in errors


async def test_a_taken_port_is_one_line_naming_the_address_and_the_listen_key(config_path: Path) -> None:
    port = load_config(config_path).listen.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        bridge = await start_bridge(config_path)
        async with asyncio.timeout(30):
            code = await bridge.wait()

    assert bridge.stderr is not None
    errors = (await bridge.stderr.read()).decode()
    assert code == 1
    # Nothing else at INFO on the way there either: no Alembic plugin or context lines.
    assert errors == f"cannot listen on 127.0.0.1:{port}: Address already in use (listen in {config_path})\n"
