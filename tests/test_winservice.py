"""The Windows service, with a stand-in for the service control manager (the one thing that cannot run here): the
service runs the real bridge on loopback, stops it as SIGTERM does, and tells the SCM and the event log."""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.errors import UserError
from bridge.winservice import (
    DEFAULT_ACCOUNT,
    FAILED,
    PYTHON_CLASS,
    SC_ACTION_RESTART,
    SERVICE_AUTO_START,
    STOP_WAIT_HINT_MS,
    EventKind,
    ServiceHost,
    ServiceInstallation,
    ServiceState,
    create_arguments,
    failure_actions,
    manage,
    plan_installation,
    service_options,
)


class StandInScm:
    """What the SCM and the event log are told, with when (SetServiceStatus and ReportEvent)."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, ServiceState, int]] = []
        self.events: list[tuple[EventKind, str]] = []
        self.running = threading.Event()

    def report(self, state: ServiceState, *, wait_hint_ms: int = 0) -> None:
        self.reports.append((time.monotonic(), state, wait_hint_ms))
        if state is ServiceState.RUNNING:
            self.running.set()

    def log_event(self, kind: EventKind, message: str) -> None:
        self.events.append((kind, message))

    def states(self) -> list[ServiceState]:
        """The states reported, each run of repeated checkpoints as one."""
        found: list[ServiceState] = []
        for _, state, _ in self.reports:
            if not found or found[-1] is not state:
                found.append(state)
        return found


class ServiceThread:
    """The thread the SCM runs the service in (ServiceMain), and the code it ends with."""

    def __init__(self, host: ServiceHost) -> None:
        self.code: int | None = None
        self._thread = threading.Thread(target=self._run, args=(host,), name="ServiceMain")
        self._thread.start()

    def _run(self, host: ServiceHost) -> None:
        self.code = host.run()

    async def ended(self, within: float) -> bool:
        await asyncio.to_thread(self._thread.join, within)
        return not self._thread.is_alive()


async def _running(host: ServiceHost, scm: StandInScm) -> tuple[ServiceThread, str]:
    service = ServiceThread(host)
    assert await asyncio.to_thread(scm.running.wait, 60), scm.events
    started = next(message for kind, message in scm.events if "started" in message)
    return service, started.split("listening on ", 1)[1].split()[0]


async def test_the_service_runs_the_bridge_answering_on_loopback(config_path: Path) -> None:
    scm = StandInScm()
    host = ServiceHost(config_path, scm)
    service, url = await _running(host, scm)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as answer:
            assert answer.status == 200
        assert scm.states() == [ServiceState.START_PENDING, ServiceState.RUNNING]
        assert scm.events[0][0] is EventKind.INFORMATION
    finally:
        host.request_stop()
        assert await service.ended(within=30)


async def test_the_scm_stop_is_the_graceful_stop_within_the_wait_hint(config_path: Path) -> None:
    scm = StandInScm()
    host = ServiceHost(config_path, scm)
    service, url = await _running(host, scm)

    asked: list[float] = []

    def control_handler() -> None:  # the SCM's control thread calls the service's handler
        asked.append(time.monotonic())
        host.request_stop()

    await asyncio.to_thread(control_handler)
    assert await service.ended(within=STOP_WAIT_HINT_MS / 1000)

    assert service.code == 0
    assert scm.states() == [ServiceState.START_PENDING, ServiceState.RUNNING, ServiceState.STOP_PENDING]
    pending = [(at, hint) for at, state, hint in scm.reports if state is ServiceState.STOP_PENDING]
    assert pending[0][0] - asked[0] < 1.0  # acknowledged at once, before the graceful stop runs
    assert all(hint == STOP_WAIT_HINT_MS for _, hint in pending)
    # Checkpoints come well inside the wait hint, so the SCM never gives up on a stop that is progressing.
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(pending)]
    assert all(gap < STOP_WAIT_HINT_MS / 1000 / 2 for gap in gaps)
    messages = [message for _, message in scm.events]
    assert any("stopping" in message for message in messages)
    assert messages[-1].endswith("stopped")
    with pytest.raises(aiohttp.ClientConnectionError):  # the listener is closed
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz"):
            pass


async def test_the_stopped_bridge_left_its_work_committed(config_path: Path) -> None:
    """Stopped by the SCM, the database is whole: the next start (here, an admin command) reads every mailbox."""
    scm = StandInScm()
    host = ServiceHost(config_path, scm)
    service, _ = await _running(host, scm)
    host.request_stop()
    assert await service.ended(within=STOP_WAIT_HINT_MS / 1000)

    from bridge.admin import list_mailboxes
    from bridge.store.db import Database

    database = Database(load_config(config_path).database_url)
    try:
        with database.session() as session:
            assert [view.status for view in list_mailboxes(session)] == ["active"]
    finally:
        database.close()


async def test_a_config_that_does_not_load_is_an_event_log_error_and_a_failed_exit(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("listen: {port: not-a-port}\n")
    scm = StandInScm()

    code = await asyncio.to_thread(ServiceHost(config, scm).run)

    assert code == FAILED
    [(kind, message)] = scm.events
    assert kind is EventKind.ERROR
    assert "cannot start" in message
    assert "listen.port" in message
    assert ServiceState.RUNNING not in scm.states()


async def test_a_failure_while_starting_is_an_event_log_error_and_a_failed_exit(config_path: Path) -> None:
    port = load_config(config_path).listen.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        scm = StandInScm()
        code = await asyncio.to_thread(ServiceHost(config_path, scm).run)

    assert code == FAILED
    kind, message = scm.events[-1]
    assert kind is EventKind.ERROR
    assert "failed" in message
    assert "address already in use" in message.lower() or "10048" in message


def test_install_runs_pythonservice_with_the_config_as_a_virtual_account(config_path: Path) -> None:
    installation = plan_installation(load_config(config_path))

    arguments = create_arguments(installation)

    assert arguments["pythonClassString"] == PYTHON_CLASS == "bridge.winservice.PresenceBridgeService"
    assert arguments["serviceName"] == "presence-bridge"
    assert arguments["userName"] == DEFAULT_ACCOUNT == "NT SERVICE\\presence-bridge"
    assert arguments["password"] is None
    assert arguments["startType"] == SERVICE_AUTO_START
    assert arguments["delayedstart"] is True
    assert service_options(installation) == {"config": str(config_path.resolve())}


def test_install_sets_restart_on_failure(config_path: Path) -> None:
    installation = plan_installation(load_config(config_path))

    actions = failure_actions(installation.recovery)

    assert actions == {
        "ResetPeriod": 86_400,
        "RebootMsg": None,
        "Command": None,
        "Actions": [(SC_ACTION_RESTART, 5_000), (SC_ACTION_RESTART, 30_000), (SC_ACTION_RESTART, 60_000)],
    }
    assert installation.recovery.on_non_crash_failures  # a stop with exit code FAILED restarts it too


def test_a_domain_account_is_installed_with_its_password(config_path: Path) -> None:
    installation = plan_installation(load_config(config_path), "CONTOSO\\svc-presence", "its-password")
    assert create_arguments(installation)["userName"] == "CONTOSO\\svc-presence"
    assert create_arguments(installation)["password"] == "its-password"
    assert "its-password" not in repr(installation)


@pytest.mark.parametrize("account", ["CONTOSO\\svc-presence", ".\\presence"])
def test_an_account_without_its_password_is_refused(config_path: Path, account: str) -> None:
    with pytest.raises(UserError, match="needs its password"):
        plan_installation(load_config(config_path), account)


@pytest.mark.parametrize("account", ["CONTOSO\\gmsa-presence$", "NT AUTHORITY\\LocalService", "LocalSystem"])
def test_managed_and_built_in_accounts_need_no_password(config_path: Path, account: str) -> None:
    assert plan_installation(load_config(config_path), account).password is None


class StandInManager:
    """The installer's side of the SCM: the services it holds."""

    def __init__(self) -> None:
        self.installed: dict[str, ServiceInstallation] = {}
        self.state_of: dict[str, ServiceState] = {}

    def install(self, installation: ServiceInstallation) -> None:
        self.installed[installation.name] = installation
        self.state_of[installation.name] = ServiceState.STOPPED

    def remove(self, name: str) -> None:
        del self.installed[name], self.state_of[name]

    def start(self, name: str) -> None:
        self.state_of[name] = ServiceState.RUNNING

    def stop(self, name: str) -> None:
        self.state_of[name] = ServiceState.STOPPED

    def state(self, name: str) -> ServiceState | None:
        return self.state_of.get(name)


def test_install_start_status_stop_remove(config_path: Path) -> None:
    manager = StandInManager()
    installation = plan_installation(load_config(config_path))

    assert "installed, running as NT SERVICE\\presence-bridge" in manage("install", manager, installation)
    assert manager.installed["presence-bridge"] == installation
    assert manage("status", manager) == "presence-bridge: stopped"
    manage("start", manager)
    assert manage("status", manager) == "presence-bridge: running"
    manage("stop", manager)
    manage("remove", manager)
    assert manager.installed == {}


def test_a_service_that_is_not_installed_says_how_to_install_it() -> None:
    with pytest.raises(UserError, match="not installed") as caught:
        manage("start", StandInManager())
    assert "service install --config" in caught.value.render()


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows only")
def test_off_windows_the_command_points_at_systemd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "status"]) == 1
    assert "systemd" in capsys.readouterr().err
