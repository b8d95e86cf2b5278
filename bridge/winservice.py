"""The bridge as a Windows service (`presence-bridge service install|remove|start|stop|status`, docs/windows.md).

The service runs the same `BridgeRun` as `presence-bridge run`: the service control manager's stop (and the
system's shutdown) is the graceful stop SIGTERM asks for elsewhere. What the SCM sees (pending states with wait
hints, running, the exit code) and what goes to the Windows event log is decided here, platform-neutral, against
two small protocols; the pywin32 calls that implement them are at the end, behind the platform check, and are the
only place pywin32 is imported (the optional extra `presence-bridge[windows]`).
"""

from __future__ import annotations

import asyncio
import enum
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.config import Config, load_config
from bridge.errors import UserError
from bridge.lifecycle import BridgeRun
from bridge.templates import default_mapping_path, load_mapping

SERVICE_NAME = "presence-bridge"
DISPLAY_NAME = "Exchange presence bridge"
DESCRIPTION = "Keeps the workforce system in step with people's Exchange calendars."
PYTHON_CLASS = f"{__name__}.PresenceBridgeService"
CONFIG_OPTION = "config"  # the service's Parameters registry key holds the config path under this name
# A virtual account: no password to manage, a profile of its own, and files can be granted to it by name.
DEFAULT_ACCOUNT = f"NT SERVICE\\{SERVICE_NAME}"
# The SCM waits this long past each checkpoint; the bridge reports one every heartbeat (1 s), so these bound the
# silence of a stalled start or stop, not its length. Stopping is bounded by Service.stop itself.
START_WAIT_HINT_MS = 30_000
STOP_WAIT_HINT_MS = 15_000
FAILED = 1  # the service-specific exit code of a run that ended in an error: it triggers the recovery actions


class ServiceState(enum.IntEnum):
    """SERVICE_STATUS.dwCurrentState values (winsvc.h)."""

    STOPPED = 1
    START_PENDING = 2
    STOP_PENDING = 3
    RUNNING = 4


class EventKind(enum.IntEnum):
    """Event log entry types (winnt.h)."""

    ERROR = 1
    WARNING = 2
    INFORMATION = 4


class ServiceControl(Protocol):
    """The running service's side of the SCM: SetServiceStatus and the event log."""

    def report(self, state: ServiceState, *, wait_hint_ms: int = 0) -> None: ...

    def log_event(self, kind: EventKind, message: str) -> None: ...


class ScmReporter:
    """The run's progress as the SCM wants it: a checkpoint every second while starting or stopping."""

    heartbeat_interval = 1.0

    def __init__(self, control: ServiceControl) -> None:
        self._control = control
        self._pending: tuple[ServiceState, int] | None = (ServiceState.START_PENDING, START_WAIT_HINT_MS)

    def status(self, text: str) -> None:
        self.heartbeat()

    def ready(self, text: str) -> None:
        self._pending = None
        self._control.report(ServiceState.RUNNING)
        self._control.log_event(EventKind.INFORMATION, f"{DISPLAY_NAME} started: {text}")

    def heartbeat(self) -> None:
        if self._pending is not None:
            state, hint = self._pending
            self._control.report(state, wait_hint_ms=hint)

    def stopping(self, text: str) -> None:
        self._pending = (ServiceState.STOP_PENDING, STOP_WAIT_HINT_MS)
        self.heartbeat()
        self._control.log_event(EventKind.INFORMATION, f"{DISPLAY_NAME} {text}")

    def stopped(self, failure: str | None) -> None:
        if failure is None:
            self._control.log_event(EventKind.INFORMATION, f"{DISPLAY_NAME} stopped")
        else:
            self._control.log_event(EventKind.ERROR, f"{DISPLAY_NAME} {failure}")


class ServiceHost:
    """The service's body: `run` is what the SCM's service thread runs, `request_stop` what its stop control calls."""

    def __init__(self, config_path: Path | None, control: ServiceControl) -> None:
        self._config_path = config_path
        self._control = control
        self._run: BridgeRun | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> int:
        """Run the bridge until stopped; 0 after a stop, FAILED when it could not start or failed while running."""
        self._control.report(ServiceState.START_PENDING, wait_hint_ms=START_WAIT_HINT_MS)
        try:
            run = BridgeRun(self._load(), ScmReporter(self._control))
        except UserError as exc:
            self._control.log_event(EventKind.ERROR, f"{DISPLAY_NAME} cannot start: {exc.render()}")
            return FAILED
        with self._lock:
            self._run = run
            if self._stop_requested.is_set():
                run.request_stop()
        try:
            asyncio.run(run.serve())
        except Exception:  # the reporter has put the failure in the event log; the exit code tells the SCM
            return FAILED
        return 0

    def request_stop(self) -> None:
        """The SCM's stop (from its own thread): acknowledged at once, then the graceful stop runs."""
        self._control.report(ServiceState.STOP_PENDING, wait_hint_ms=STOP_WAIT_HINT_MS)
        with self._lock:
            self._stop_requested.set()
            if self._run is not None:
                self._run.request_stop()

    def _load(self) -> Config:
        if self._config_path is None:
            raise UserError("no configuration file", ["reinstall: presence-bridge service install --config FILE"])
        config = load_config(self._config_path)
        load_mapping(config.templates or default_mapping_path())  # a bad mapping stops the start, with its lines
        return config


@dataclass(frozen=True, slots=True)
class RecoveryActions:
    """What the SCM does when the service fails: restart it, waiting longer each time (sc.exe failure)."""

    restart_after_ms: tuple[int, ...] = (5_000, 30_000, 60_000)
    reset_after_s: int = 86_400  # a day without failures starts the count again
    # Also a stop with a non-zero exit code (FAILED), not only a crash (SERVICE_CONFIG_FAILURE_ACTIONS_FLAG).
    on_non_crash_failures: bool = True


@dataclass(frozen=True, slots=True)
class ServiceInstallation:
    config_path: Path
    account: str = DEFAULT_ACCOUNT
    password: str | None = field(default=None, repr=False)
    name: str = SERVICE_NAME
    recovery: RecoveryActions = RecoveryActions()


SC_ACTION_RESTART = 1
SERVICE_AUTO_START = 2


def plan_installation(config: Config, account: str | None = None, password: str | None = None) -> ServiceInstallation:
    """The installation for a loaded config (the service reads it from its absolute path); a UserError, and nothing
    installed, when the account's password is missing."""
    account = account or DEFAULT_ACCOUNT
    if password is None and needs_password(account):
        raise UserError(
            f"the account {account} needs its password",
            ["give it when asked, or use the virtual account NT SERVICE\\presence-bridge (the default) or a gMSA"],
        )
    return ServiceInstallation(config_path=config.path, account=account, password=password)


def needs_password(account: str) -> bool:
    """Whether the SCM needs the account's password: virtual accounts, the built-in service accounts and group
    managed service accounts (name$) have none."""
    upper = account.upper()
    builtin = upper.startswith(("NT SERVICE\\", "NT AUTHORITY\\")) or upper in ("LOCALSYSTEM", ".\\LOCALSYSTEM")
    return not (builtin or account.endswith("$"))


def create_arguments(installation: ServiceInstallation) -> dict[str, Any]:
    """win32serviceutil.InstallService's arguments: pythonservice.exe hosts PYTHON_CLASS, started with Windows."""
    return {
        "pythonClassString": PYTHON_CLASS,
        "serviceName": installation.name,
        "displayName": DISPLAY_NAME,
        "description": DESCRIPTION,
        "startType": SERVICE_AUTO_START,
        # Delayed: the network and the database server are up by then.
        "delayedstart": True,
        "userName": installation.account,
        "password": installation.password,
    }


def failure_actions(recovery: RecoveryActions) -> dict[str, Any]:
    """ChangeServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS)'s SERVICE_FAILURE_ACTIONS, as pywin32 takes it."""
    return {
        "ResetPeriod": recovery.reset_after_s,
        "RebootMsg": None,
        "Command": None,
        "Actions": [(SC_ACTION_RESTART, delay) for delay in recovery.restart_after_ms],
    }


def service_options(installation: ServiceInstallation) -> dict[str, str]:
    """What the service reads back from its Parameters registry key when the SCM starts it."""
    return {CONFIG_OPTION: str(installation.config_path)}


class ServiceManager(Protocol):
    """The installer's side of the SCM."""

    def install(self, installation: ServiceInstallation) -> None: ...

    def remove(self, name: str) -> None: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None: ...

    def state(self, name: str) -> ServiceState | None:
        """None: no such service."""


def manage(action: str, manager: ServiceManager, installation: ServiceInstallation | None = None) -> str:
    """Carry out `presence-bridge service ACTION`; what to tell the administrator."""
    name = installation.name if installation is not None else SERVICE_NAME
    if action == "install":
        assert installation is not None
        manager.install(installation)
        return (
            f"{name}: installed, running as {installation.account}, with {installation.config_path}; restarts after"
            f" a failure; start it with: presence-bridge service start"
        )
    state = manager.state(name)
    if state is None:
        raise UserError(f"{name} is not installed", ["install it with: presence-bridge service install --config FILE"])
    if action == "status":
        return f"{name}: {state.name.lower().replace('_', ' ')}"
    if action == "start":
        manager.start(name)
        return f"{name}: running (the event log and the log folder beside the config say more)"
    if action == "stop":
        manager.stop(name)
        return f"{name}: stopped"
    manager.remove(name)
    return f"{name}: removed (the configuration, secrets and database are left as they were)"


def system_manager() -> ServiceManager:
    """This machine's SCM, through pywin32; a UserError where there is none."""
    if sys.platform == "win32":
        if PYWIN32:
            return Pywin32Manager()
        raise UserError("pywin32 is not installed", ["install the extra: pip install presence-bridge[windows]"])
    raise UserError(
        "presence-bridge service manages a Windows service",
        ["on Linux, run the bridge under systemd: systemd/presence-bridge.service (docs/running.md)"],
    )


PYWIN32 = False
if sys.platform == "win32":
    import logging
    import logging.handlers

    try:
        import pywintypes
        import servicemanager
        import win32evtlogutil
        import win32service
        import win32serviceutil
    except ImportError:
        pass
    else:
        PYWIN32 = True

        _EVENT_WRITERS = {
            EventKind.ERROR: servicemanager.LogErrorMsg,
            EventKind.WARNING: servicemanager.LogWarningMsg,
            EventKind.INFORMATION: servicemanager.LogInfoMsg,
        }

        class ServiceFailed(Exception):
            """Raised out of SvcRun so that pythonservice reports SERVICE_STOPPED with an error (recovery runs)."""

        class PresenceBridgeService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
            _svc_name_ = SERVICE_NAME
            _svc_display_name_ = DISPLAY_NAME
            _svc_description_ = DESCRIPTION

            def __init__(self, args: Any) -> None:
                super().__init__(args)
                config = win32serviceutil.GetServiceCustomOption(args[0], CONFIG_OPTION)
                self._host = ServiceHost(Path(config) if config else None, _Pywin32Control(self))
                if config:
                    _log_beside(Path(config))

            def SvcRun(self) -> None:
                if self._host.run() != 0:
                    raise ServiceFailed("the bridge failed; the event log has the reason")

            def SvcStop(self) -> None:
                self._host.request_stop()

            SvcShutdown = SvcStop

        class _Pywin32Control:
            def __init__(self, framework: PresenceBridgeService) -> None:
                self._framework = framework

            def report(self, state: ServiceState, *, wait_hint_ms: int = 0) -> None:
                self._framework.ReportServiceStatus(int(state), waitHint=wait_hint_ms)

            def log_event(self, kind: EventKind, message: str) -> None:
                _EVENT_WRITERS[kind](message)

        class _EventLogHandler(logging.Handler):
            """Warnings and errors in the event log under the service's source (registered at install: the
            service account itself may not write the registry, so logging's NTEventLogHandler cannot be used)."""

            def emit(self, record: logging.LogRecord) -> None:
                try:
                    _EVENT_WRITERS[EventKind.ERROR if record.levelno >= logging.ERROR else EventKind.WARNING](
                        self.format(record)
                    )
                except Exception:
                    self.handleError(record)

        def _log_beside(config_path: Path) -> None:
            """The bridge's log: a rotating file in `logs` beside the config; warnings and errors in the event log
            too (a service has no console; docs/windows.md)."""
            folder = config_path.parent / "logs"
            folder.mkdir(exist_ok=True)
            file = logging.handlers.RotatingFileHandler(
                folder / "presence-bridge.log", maxBytes=10_000_000, backupCount=5, encoding="utf-8"
            )
            file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            events = _EventLogHandler(logging.WARNING)
            logging.basicConfig(level=logging.INFO, handlers=[file, events], force=True)

        class Pywin32Manager:
            def install(self, installation: ServiceInstallation) -> None:
                win32serviceutil.InstallService(**create_arguments(installation))
                try:
                    for option, value in service_options(installation).items():
                        win32serviceutil.SetServiceCustomOption(installation.name, option, value)
                    self._configure_recovery(installation)
                    win32evtlogutil.AddSourceToRegistry(installation.name, servicemanager.__file__)
                except BaseException:
                    win32serviceutil.RemoveService(installation.name)  # a half-installed service helps no one
                    raise

            def _configure_recovery(self, installation: ServiceInstallation) -> None:
                scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
                try:
                    service = win32service.OpenService(scm, installation.name, win32service.SERVICE_ALL_ACCESS)
                    try:
                        win32service.ChangeServiceConfig2(
                            service,
                            win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
                            failure_actions(installation.recovery),
                        )
                        win32service.ChangeServiceConfig2(
                            service,
                            win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG,
                            installation.recovery.on_non_crash_failures,
                        )
                    finally:
                        win32service.CloseServiceHandle(service)
                finally:
                    win32service.CloseServiceHandle(scm)

            def remove(self, name: str) -> None:
                win32serviceutil.RemoveService(name)

            def start(self, name: str) -> None:
                win32serviceutil.StartService(name)
                win32serviceutil.WaitForServiceStatus(name, win32service.SERVICE_RUNNING, START_WAIT_HINT_MS // 1000)

            def stop(self, name: str) -> None:
                win32serviceutil.StopService(name)
                win32serviceutil.WaitForServiceStatus(name, win32service.SERVICE_STOPPED, STOP_WAIT_HINT_MS // 1000)

            def state(self, name: str) -> ServiceState | None:
                try:
                    return ServiceState(win32serviceutil.QueryServiceStatus(name)[1])
                except pywintypes.error as exc:
                    if exc.winerror == 1060:  # ERROR_SERVICE_DOES_NOT_EXIST
                        return None
                    raise
