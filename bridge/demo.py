"""`presence-bridge demo`: the whole chain on one machine, with nothing to configure.

It starts the Graph tenant emulator (three people with a mix of appointments), the EWS emulator standing in for
an on-premises Exchange server (one more person: a hybrid deployment), the workforce receiver emulator and the
bridge itself on a SQLite file in a temporary folder, configured through an ordinary config file. Then it
keeps changing appointments the way people do in Outlook and prints every change the workforce system receives,
mapped to its template, as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bridge.config import Config, load_config
from bridge.domain import FreeBusy
from bridge.mailbox_sync import SyncTiming
from bridge.service import Service
from bridge.templates import TemplateMapping, default_mapping_path
from emulators.ews import EwsEmulator
from emulators.graph import GraphEmulator
from emulators.harness import SECRET, OnPrem, local_config_file
from emulators.workforce import WorkforceReceiver

PEOPLE = [("AdeleV@contoso.com", "Adele Vance", "E1001"), ("GradyA@contoso.com", "Grady Archie", "E1002")]
PEOPLE.append(("LeeG@contoso.com", "Lee Gu", "E1003"))
# Still on the company's own Exchange server, reached through EWS.
ONPREM = ("NestorW@contoso.com", "Nestor Wilke", "E1004")
SERVICE_ACCOUNT = ("CONTOSO\\svc-presence", "demo-service-account-password")
# The demo's bridge reacts in about a second; production keeps the defaults (docs/sync.md).
DEMO_TIMING = SyncTiming(settle=timedelta(milliseconds=100), poll=timedelta(milliseconds=500))


def _at(day: date, hour: float) -> dict[str, str]:
    moment = datetime.combine(day, time(), tzinfo=UTC) + timedelta(hours=hour)
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _event(subject: str, day: date, start: float, end: float, show_as: str = "busy", **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": _at(day, start), "end": _at(day, end), "showAs": show_as, **extra}


def seed(graph: GraphEmulator, today: date) -> list[tuple[str, dict[str, Any]]]:
    """A realistic mix: what is shown, what is masked and what is never shown; returns (address, event) made."""
    adele, grady, lee = (person[0] for person in PEOPLE)
    day = today + timedelta(days=1)
    made: list[tuple[str, dict[str, Any]]] = []

    def create(address: str, event: dict[str, Any]) -> None:
        graph.create_event_as_outlook(address, event)
        made.append((address, event))

    create(adele, _event("Customer visit", day, 9, 10.5))
    create(adele, _event("*Dentist", day, 14, 15))  # ignore character: never shown
    create(adele, _event("Doctor", day + timedelta(days=1), 8, 9, sensitivity="private"))
    standup = _event("Daily stand-up", day, 7, 7.25)
    standup["recurrence"] = {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
        },
        "range": {"type": "numbered", "startDate": day.isoformat(), "numberOfOccurrences": 5},
    }
    create(grady, standup)
    create(grady, _event("Vacation", day + timedelta(days=3), 0, 72, "oof", isAllDay=True))
    create(lee, _event("Maybe: workshop", day, 13, 17, "tentative"))
    create(lee, _event("Home office", day + timedelta(days=2), 0, 24, "workingElsewhere", isAllDay=True))
    create(lee, _event("Focus time", day, 9, 11, "free"))  # free: never shown
    return made


def seed_onprem(ews: EwsEmulator, today: date) -> None:
    day = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    nestor = ONPREM[0]
    ews.create_item_as_outlook(
        nestor, subject="Plant tour", start=day + timedelta(hours=10), end=day + timedelta(hours=12)
    )
    ews.create_item_as_outlook(
        nestor, subject="Trade fair", start=day + timedelta(days=2), end=day + timedelta(days=3), is_all_day=True,
        free_busy="WorkingElsewhere",
    )  # fmt: skip


def _when(start: datetime, end: datetime, all_day: bool) -> str:
    """A span as the demo prints it: times in UTC, labelled so (the bridge and its webhook speak UTC only)."""
    if not all_day:
        return f"{start:%a %d %b %H:%M}-{end:%H:%M} UTC"
    if end - start > timedelta(days=1):
        return f"{start:%a %d %b}-{end - timedelta(days=1):%a %d %b} all day"
    return f"{start:%a %d %b} all day"


def describe(change: dict[str, Any]) -> str:
    appointment = change["appointment"]
    start = datetime.fromisoformat(appointment["start"])
    end = datetime.fromisoformat(appointment["end"])
    when = _when(start, end, appointment["all_day"])
    subject = appointment.get("subject")
    shown = f'"{subject}"' if subject is not None else "(private: no subject)"
    kind = change["type"].removeprefix("appointment.")
    return (
        f"#{change['sequence']:<3} {change['mailbox']:<20} {kind:<8} {appointment['template']:<10} {when:<28} {shown}"
    )


def describe_hidden(mapping: TemplateMapping, address: str, event: dict[str, Any]) -> str | None:
    """The line for an appointment made in Outlook that the workforce system is not told about, if it is one."""
    why = mapping.why_hidden(str(event["subject"]), FreeBusy(event["showAs"]))
    if why is None:
        return None
    start = datetime.fromisoformat(event["start"]["dateTime"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(event["end"]["dateTime"]).replace(tzinfo=UTC)
    when = _when(start, end, bool(event.get("isAllDay")))
    return f'hidden ({why}): {address.lower()} {when} "{event["subject"]}"'


class _Outlook:
    """People changing their calendars while the demo runs."""

    def __init__(self, graph: GraphEmulator, ews: EwsEmulator, today: date) -> None:
        self._graph = graph
        self._ews = ews
        self._today = today
        self._made: list[tuple[str, str]] = []
        self._random = random.Random(7)
        self.created: tuple[str, dict[str, Any]] | None = None  # the Graph event the last step created

    def step(self) -> str:
        self.created = None
        day = self._today + timedelta(days=self._random.randint(1, 10))
        if self._random.random() < 0.25:
            start = datetime.combine(day, time(self._random.randint(8, 16)), tzinfo=UTC)
            subject, state = self._random.choice([("Shift handover", "Busy"), ("Off site", "OOF")])
            self._ews.create_item_as_outlook(
                ONPREM[0], subject=subject, start=start, end=start + timedelta(hours=1), free_busy=state
            )
            return f"{ONPREM[0]} (on-premises) creates '{subject}' ({state})"
        address = self._random.choice(PEOPLE)[0]
        if self._made and self._random.random() < 0.35:
            who, item = self._made.pop(self._random.randrange(len(self._made)))
            if self._random.random() < 0.5:
                self._graph.delete_event_as_outlook(who, item)
                return f"{who} deletes an appointment"
            hour = self._random.randint(8, 16)
            self._graph.update_event_as_outlook(who, item, {"start": _at(day, hour), "end": _at(day, hour + 1)})
            self._made.append((who, item))
            return f"{who} moves an appointment"
        subject, show_as = self._random.choice(
            [("Team meeting", "busy"), ("Customer call", "busy"), ("Sick leave", "oof"), ("Training", "tentative"),
             ("Working from Berlin", "workingElsewhere"), ("*Private errand", "busy")]
        )  # fmt: skip
        hour = self._random.randint(8, 16)
        event = _event(subject, day, hour, hour + 1, show_as)
        created = self._graph.create_event_as_outlook(address, event)
        self._made.append((address, str(created["id"])))
        self.created = (address, event)
        return f"{address} creates '{subject}' ({show_as})"


async def run_demo(
    *, duration_s: float | None = None, change_every_s: float = 4.0, out: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run until `duration_s` has passed (None: until cancelled); returns the changes the workforce side got.

    The temporary folder (the SQLite file, and a config file holding the emulators' secrets in plain text) is
    removed however the demo ends, Ctrl-C included.
    """
    folder = Path(tempfile.mkdtemp(prefix="presence-bridge-demo-"))
    try:
        return await _run_demo(folder, duration_s, change_every_s, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class DemoRun:
    """The demo's parts while it runs: the emulators, the bridge, and a token for each kind of client."""

    graph: GraphEmulator
    ews: EwsEmulator
    workforce: WorkforceReceiver
    workforce_url: str
    service: Service
    config: Config
    seeded: list[tuple[str, dict[str, Any]]]  # (address, event) made in Outlook before the bridge started
    workforce_token: str
    admin_token: str


@contextlib.asynccontextmanager
async def running_demo(folder: Path, today: date) -> AsyncIterator[DemoRun]:
    """The emulators seeded with the demo's people and the bridge watching them, state in `folder`; all stopped
    when the block ends. The admin page's browser tests run against this too."""
    async with contextlib.AsyncExitStack() as stack:
        graph = GraphEmulator(ca_file=folder / "graph-ca.pem")
        await graph.start()
        stack.push_async_callback(graph.stop)
        ews = EwsEmulator(ca_file=folder / "ews-ca.pem")
        ews.add_mailbox(ONPREM[0], ONPREM[1])
        ews.add_service_account(*SERVICE_ACCOUNT)
        await ews.start()
        stack.push_async_callback(ews.stop)
        workforce = WorkforceReceiver(SECRET)
        workforce_url = await workforce.start()
        stack.push_async_callback(workforce.stop)
        onprem = OnPrem(ews.url, ews.ca_file, *SERVICE_ACCOUNT, mailboxes=[(ONPREM[0], ONPREM[2])])
        # One token per kind of client, as a deployment would have: the workforce system's cannot administer.
        workforce_token, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        tokens = (
            "api_tokens:\n"
            f"  - {{name: workforce, token: {workforce_token}, scopes: [workforce]}}\n"
            f"  - {{name: admin, token: {admin_token}, scopes: [admin]}}\n"
        )
        # A copy of the shipped mapping, so that the admin page's Mapping page can edit it while the demo runs.
        shutil.copyfile(default_mapping_path(), folder / "mapping.yaml")
        extra = f"{tokens}templates: mapping.yaml\n"
        config = load_config(local_config_file(folder, graph, workforce_url, PEOPLE, extra=extra, onprem=onprem))
        seeded = seed(graph, today)
        seed_onprem(ews, today)
        service = Service(config, timing=DEMO_TIMING)
        stack.push_async_callback(service.stop)
        await service.start()
        yield DemoRun(graph, ews, workforce, workforce_url, service, config, seeded, workforce_token, admin_token)


async def _run_demo(
    folder: Path, duration_s: float | None, change_every_s: float, out: Callable[[str], None]
) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    async with running_demo(folder, today) as demo:
        graph, ews, workforce, service = demo.graph, demo.ews, demo.workforce, demo.service
        for line in _entry_points(demo):
            out(line)
        out("Changes as the workforce system receives them (times in UTC):")
        mapping = service.mapping.current
        for line in filter(None, (describe_hidden(mapping, address, event) for address, event in demo.seeded)):
            out("  " + line)
        outlook = _Outlook(graph, ews, today)
        printed = 0
        started = asyncio.get_running_loop().time()
        next_change = started + change_every_s
        while duration_s is None or asyncio.get_running_loop().time() - started < duration_s:
            for change in workforce.changes[printed:]:
                out("  " + describe(change))
            printed = len(workforce.changes)
            if asyncio.get_running_loop().time() >= next_change:
                out(f"  -- {outlook.step()}")
                hidden = describe_hidden(mapping, *outlook.created) if outlook.created else None
                if hidden:
                    out("  " + hidden)
                next_change += change_every_s
            await asyncio.sleep(0.2)
        return list(workforce.changes)
    raise AssertionError("unreachable")


def _entry_points(demo: DemoRun) -> list[str]:
    """What an administrator can open or run while the demo runs."""
    bridge, config = demo.service.url, demo.config.path
    return [
        f"Graph emulator   {demo.graph.base_url}  (control API {demo.graph.control_url})",
        f"EWS emulator     {demo.ews.url}  (on-premises: {ONPREM[0]})",
        f"Workforce system {demo.workforce_url}",
        f"Bridge           {bridge}  (its warnings and errors appear below; --log-level INFO shows more)",
        f"  admin page     {bridge}/admin/  (sign in with the admin token {demo.admin_token})",
        f"  health         {bridge}/healthz   {bridge}/readyz",
        f"  metrics        {bridge}/metrics",
        f"  API            {bridge}/api/v1/openapi.json describes it; with the workforce system's token:",
        f"                 curl -H 'Authorization: Bearer {demo.workforce_token}' '{bridge}/api/v1/changes?after=0'",
        f"  status         presence-bridge status --config {config}",
        f"  state          {config.parent} (the config holds plain secrets: removed when the demo ends)",
    ]
