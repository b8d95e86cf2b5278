"""Driving a bridge against the emulators: the config file that points it at them, loopback ports, and
`presence-bridge run` as a process of its own.

The demo, the tests and the benchmarks all configure the bridge this way, as an operator does: a YAML file read by
the same loader. This module imports nothing of the bridge (docs/architecture.md): it writes text and starts the
bridge's command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from emulators.graph import GraphEmulator

# The webhook signing secret the demo, tests and benchmarks share with their workforce receiver.
SECRET = "whsec_ZGVtby1zaWduaW5nLXNlY3JldC0xMjM0NTY3ODkw"


class GraphEndpoints(Protocol):
    """Where the bridge finds a Graph emulator: the emulator itself, or `GraphAt` for one in another process."""

    @property
    def authority(self) -> str: ...

    @property
    def graph_url(self) -> str: ...

    @property
    def ca_file(self) -> Path | str | None: ...


@dataclass(frozen=True)
class GraphAt:
    """A Graph emulator in another process, as its startup line told it (`python -m emulators.graph`)."""

    authority: str
    graph_url: str
    ca_file: str


@dataclass(frozen=True)
class OnPrem:
    """An on-premises Exchange (the EWS emulator) beside the online tenant, and who has a mailbox there."""

    endpoint: str
    ca_file: Path | None
    username: str
    password: str
    mailboxes: Sequence[tuple[str, str]]  # (address, workforce id)
    extra: Sequence[str] = ()  # more keys of the EWS source, one line of YAML each ("impersonation: false")


def free_port() -> int:
    """A loopback port nothing listens on right now (for a process that must know its URL before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    path: Path,
    *,
    graph: GraphEndpoints,
    app: Any,
    port: int,
    workforce_url: str,
    secret: str,
    database_url: str,
    mailboxes: Sequence[tuple[str, str]],
    extra: str = "",
    onprem: OnPrem | None = None,
    graph_extra: str = "",
) -> Path:
    """A config file for a bridge on `port` watching `mailboxes` ((address, workforce id)) in the Graph emulator
    (and `onprem`'s in the EWS emulator) and delivering to `workforce_url`; `extra` is more top-level YAML,
    `graph_extra` more keys of the Graph source (one line of YAML flow style each). The
    demo, the tests and the benchmarks all configure the bridge this way, through the same loader an operator's
    file goes through."""
    entries = [(address, workforce_id, "online") for address, workforce_id in mailboxes]
    ews_source = ""
    if onprem is not None:
        entries += [(address, workforce_id, "onprem") for address, workforce_id in onprem.mailboxes]
        trust = f"ca_file: {onprem.ca_file}" if onprem.ca_file else "verify_tls: false"
        ews_source = (
            "\n  onprem:\n    kind: ews\n"
            f"    service_endpoint: {onprem.endpoint}\n"
            f"    username: '{onprem.username}'\n"
            f"    password: {onprem.password}\n"
            f"    auth_type: basic\n    {trust}"
        ) + "".join(f"\n    {line}" for line in onprem.extra)
    listed = (
        "\n".join(
            f'  - {{address: {address}, workforce_id: "{workforce_id}", source: {source}}}'
            for address, workforce_id, source in entries
        )
        or "  []"
    )
    text = f"""
    database_url: {database_url}
    listen: {{host: 127.0.0.1, port: {port}}}
    public_url: http://127.0.0.1:{port}
    sources:
      online:
        kind: graph
        tenant_id: {app.tenant_id}
        client_id: {app.client_id}
        client_secret: {app.client_secret}
        authority_host: {graph.authority}
        graph_url: {graph.graph_url}
        ca_file: {graph.ca_file}{{graph_extra}}{{ews_source}}
    mailboxes:
    {{mailboxes}}
    workforce:
      url: {workforce_url}
      signing_secret: {secret}
    """
    graph_lines = "".join(f"\n    {line}" for line in graph_extra.splitlines() if line.strip())
    text = textwrap.dedent(text).replace("{mailboxes}", listed).replace("{ews_source}", ews_source)
    text = text.replace("{graph_extra}", graph_lines)
    path.write_text(text + textwrap.dedent(extra), encoding="utf-8")
    return path


def write_instance_configs(
    folder: Path,
    count: int,
    *,
    graph: GraphEmulator,
    app: Any,
    workforce_url: str,
    secret: str,
    database_url: str,
    mailboxes: Sequence[tuple[str, str]],
    extra: str = "",
) -> list[tuple[Path, str]]:
    """Config files for `count` instances sharing one (PostgreSQL) database, each listening on its own port, all
    with the first one's public URL (in production a load balancer's): its path and URL for each instance; `extra`
    is more top-level YAML for each."""
    ports = [free_port() for _ in range(count)]
    written = []
    for n, port in enumerate(ports):
        path = write_config(
            folder / f"instance{n}.yaml",
            graph=graph,
            app=app,
            port=port,
            workforce_url=workforce_url,
            secret=secret,
            database_url=database_url,
            mailboxes=mailboxes,
            extra=extra,
        )
        public = f"public_url: http://127.0.0.1:{ports[0]}"
        path.write_text(path.read_text().replace(f"public_url: http://127.0.0.1:{port}", public))
        written.append((path, f"http://127.0.0.1:{port}"))
    return written


def local_config_file(
    folder: Path,
    graph: GraphEmulator,
    workforce_url: str,
    people: Sequence[tuple[str, str, str]],
    extra: str = "",
    onprem: OnPrem | None = None,
) -> Path:
    """Register an app and `people` ((address, name, workforce id)) in the emulated tenant; the config file of a
    bridge on SQLite in `folder` that watches them (and `onprem`'s mailboxes) and delivers to `workforce_url` (`extra`:
    more top-level YAML)."""
    app = graph.add_app()
    for address, name, _ in people:
        graph.add_user(address, name)
    return write_config(
        folder / "config.yaml",
        graph=graph,
        app=app,
        port=free_port(),
        workforce_url=workforce_url,
        secret=SECRET,
        database_url=f"sqlite:///{folder / 'bridge.db'}",
        mailboxes=[(address, workforce_id) for address, _, workforce_id in people],
        extra=extra,
        onprem=onprem,
    )


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, user + system (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def resident_kb(pid: int) -> tuple[int, int]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in KB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def cpu_seconds_named(name: str) -> float:
    """The CPU time so far of every process called `name` (PostgreSQL's server and its backends: "postgres");
    processes that end between the listing and the read are left out."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    total += cpu_seconds(int(entry.name))
    return total


def machine_idle_seconds() -> float:
    """CPU seconds the machine's cores have spent idle (or waiting for a disk) since it booted, all cores added up
    (Linux /proc/stat): over an interval, how much of the machine nobody used."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / _CLOCK_TICKS


class BridgeProcess:
    """`presence-bridge run --config CONFIG` as a process of its own, answering at `url`, its output in `log`; the
    caller may kill it and start it again."""

    def __init__(self, config: Path, url: str, log: Path) -> None:
        self.config, self.url, self.log = config, url, log
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError(f"the bridge for {self.config} was never started")
        return self._process

    async def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        with self.log.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "run", "--config", str(self.config), stdout=out, stderr=out
            )

    async def start(self, within: float = 60) -> None:
        await self.spawn()
        await self.listening(within)

    def running(self) -> None:
        """Raises with the end of the process's log when it has exited: a crash must not read as a refused port."""
        if self.process.returncode is not None:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the bridge at {self.url} exited with {self.process.returncode}:\n{tail}")

    async def listening(self, within: float) -> None:
        """Wait until /healthz answers 200, at most `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with aiohttp.ClientSession() as session:
            while True:
                self.running()
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                if loop.time() > deadline:
                    raise RuntimeError(f"the bridge at {self.url} did not answer in {within} s")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: nothing runs on the way out, as when the machine loses power."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    def terminate(self) -> None:
        """SIGTERM, as the service manager stops it; `stopped` waits for the exit."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()

    async def stopped(self, within: float = 15) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(self._process.wait(), within)

    async def stop(self, within: float = 15) -> None:
        self.terminate()
        await self.stopped(within)
