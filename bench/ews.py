"""How many mailboxes one EWS service account watches, and what reading a CalendarView costs per item.

Watching (the headline): the EWS emulator runs in a process of its own (plain HTTP on loopback) with N mailboxes
and Exchange's documented notification limits per throttling budget (HangingConnectionLimit 3,
EWSMaxSubscriptions 5,000: emulators/ews_throttling.py; change them with --hanging-connection-limit and
--max-subscriptions). This process is the bridge's side: one `EwsSource` for one service account and its
`EwsWatcher`, as `presence-bridge run` wires them (`streams: 3`, which binds with delegate access only; set it
with --streams). Once every mailbox is subscribed and caught up, the emulator's process changes every mailbox's
calendar once, in a random order, one change every 1/rate seconds by the schedule (a late change is still made,
and its latency still counts from its scheduled time). The latency of a change is from its scheduled time to the
moment the watcher hands the mailbox to `on_changed` (in production: the dirty mark). A change no report follows
within --grace seconds is lost. Both processes read CLOCK_MONOTONIC (Python's time.monotonic on Linux), so their
times compare.

Reading: the emulator (in this process) holds 800 appointments in one mailbox; the source reads the window once
through exchangelib, and the FindItem answer's bytes are kept. Then, on those same bytes, the source's path
(lxml, then the bridge's decoder, bridge/sources/ews_wire.py) against exchangelib's (`CalendarItem.from_xml` per
element, with the bridge's properties: `BridgeCalendarItem`; the cost the source avoids).

Run: .venv/bin/python bench/ews.py [--mailboxes 2000] [--rate 50] [--access impersonation|delegate] [--streams 3]
     [--hanging-connection-limit 3] [--max-subscriptions 5000] [--items 800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from exchangelib.util import to_xml

from bridge.domain import Window
from bridge.sources import ews_wire as wire
from bridge.sources.ews import EwsSource
from bridge.sources.ews_adapter import BridgeCalendarItem
from bridge.sources.ews_watch import EwsWatcher
from emulators.ews import EwsEmulator
from emulators.ews_throttling import HANGING_CONNECTION_LIMIT, MAX_SUBSCRIPTIONS

MAILBOX = "alice@corp.example"
USER, PASSWORD = "CORP\\svc-bench", "bench-password"
GOAL_P99_S = 10.0


# -- watching: the emulator's process ----------------------------------------------------------------------------


async def serve(mailboxes: int, access: str, hanging: int, subscriptions: int) -> None:
    """The emulator with `mailboxes` mailboxes; answers `status` and `run T0 RATE` lines on stdin with JSON lines."""
    emulator = EwsEmulator(tls=False, hanging_connection_limit=hanging, max_subscriptions=subscriptions)
    addresses = [f"user{n:05d}@corp.example" for n in range(mailboxes)]
    for address in addresses:
        emulator.add_mailbox(address)
    emulator.add_service_account(USER, PASSWORD, impersonation=access == "impersonation", full_access=True)
    await emulator.start()
    print(json.dumps({"url": emulator.url, "mailboxes": addresses}), flush=True)
    try:
        while line := (await asyncio.to_thread(sys.stdin.readline)).split():
            if line[0] == "status":
                answer = _status(emulator)
            else:
                emulator.clear_stats()
                answer = await _change_every_mailbox(emulator, addresses, float(line[1]), float(line[2]))
            print(json.dumps(answer), flush=True)
    finally:
        await emulator.stop()


def _status(emulator: EwsEmulator) -> dict[str, Any]:
    stats = emulator.stats(log_limit=0)
    return {
        "connections": len(emulator.streams.open),
        "subscriptions": dict(Counter(subscription["kind"] for subscription in emulator.subscriptions())),
        "refused_connections": emulator.streams.refused,
        "operations": stats["operations"],
        "error_codes": {code: n for code, n in stats["codes"].items() if code != "NoError"},
    }


async def _change_every_mailbox(
    emulator: EwsEmulator, addresses: list[str], first: float, rate: float
) -> dict[str, Any]:
    order = random.Random(1).sample(addresses, len(addresses))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    made = []
    for index, address in enumerate(order):
        scheduled = first + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        emulator.create_item_as_outlook(address, subject=f"Change {index}", start=start, end=start + timedelta(hours=1))
        made.append((address, scheduled, time.monotonic()))
    return {"changes": made}


# -- watching: the bridge's process ------------------------------------------------------------------------------


class Reports:
    """When the watcher reported each mailbox changed (in production: the dirty mark)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    async def __call__(self, addresses: Collection[str]) -> None:
        now = time.monotonic()
        for address in addresses:
            self.times.setdefault(address.lower(), []).append(now)

    def first_after(self, address: str, moment: float) -> float | None:
        return next((at for at in self.times.get(address.lower(), ()) if at >= moment), None)


async def watch(args: argparse.Namespace) -> dict[str, Any]:
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        str(args.mailboxes),
        args.access,
        str(args.hanging_connection_limit),
        str(args.max_subscriptions),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,  # the schedule it sends back is one JSON line
    )

    async def ask(line: str) -> dict[str, Any]:
        assert emulator.stdin is not None
        assert emulator.stdout is not None
        emulator.stdin.write(line.encode() + b"\n")
        await emulator.stdin.drain()
        return dict(json.loads(await emulator.stdout.readline()))

    assert emulator.stdout is not None
    hello = json.loads(await emulator.stdout.readline())
    addresses: list[str] = hello["mailboxes"]
    source = EwsSource(
        "bench",
        service_endpoint=hello["url"],
        username=USER,
        password=PASSWORD,
        auth_type="basic",
        impersonation=args.access == "impersonation",
    )
    reports = Reports()
    stop = asyncio.Event()

    async def listed() -> Collection[str]:
        return addresses

    started = time.monotonic()
    watcher = asyncio.create_task(EwsWatcher(source, max_streams=args.streams).run(listed, reports, stop))
    try:
        while len(reports.times) < len(addresses) and time.monotonic() - started < args.setup_within:
            await asyncio.sleep(0.2)
        caught_up_s = time.monotonic() - started
        await asyncio.sleep(2.0)  # the streams open after their group's catch-up
        before = await ask("status")
        first = time.monotonic() + 0.5
        run = await ask(f"run {first} {args.rate}")
        changes: list[tuple[str, float, float]] = [tuple(change) for change in run["changes"]]  # type: ignore[misc]
        last_made = max(made for _, _, made in changes)
        while time.monotonic() < last_made + args.grace and any(
            reports.first_after(address, made) is None for address, _, made in changes
        ):
            await asyncio.sleep(0.1)
        after = await ask("status")
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 30)
        await source.close()
        if emulator.stdin is not None:
            emulator.stdin.close()
        await emulator.wait()
    return _watch_figures(args, addresses, changes, reports, caught_up_s, before, after)


def _watch_figures(
    args: argparse.Namespace,
    addresses: list[str],
    changes: list[tuple[str, float, float]],
    reports: Reports,
    caught_up_s: float,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    latencies, lost = [], []
    for address, scheduled, made in changes:
        reported = reports.first_after(address, made)
        if reported is None:
            lost.append(address)
        else:
            latencies.append(reported - scheduled)
    spread = max(made for _, _, made in changes) - min(scheduled for _, scheduled, _ in changes)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    p99 = quantiles[98]
    resubscribed = after["operations"].get("Subscribe", 0)
    return {
        "access": args.access,
        "hanging_connection_limit": args.hanging_connection_limit,
        "max_subscriptions": args.max_subscriptions,
        "streams": args.streams,
        "mailboxes_offered": len(addresses),
        "mailboxes_caught_up": len(reports.times),
        "setup_s": round(caught_up_s, 1),
        "streaming_connections": before["connections"],
        "subscriptions": before["subscriptions"],
        "changes_offered_per_s": args.rate,
        "changes_achieved_per_s": round((len(changes) - 1) / spread, 1),
        "change_lag_p99_s": round(statistics.quantiles([m - s for _, s, m in changes], n=100)[98], 3),
        "changes": len(changes),
        "changes_reported": len(latencies),
        "lost": len(lost),
        "latency_p50_s": round(quantiles[49], 3),
        "latency_p99_s": round(p99, 3),
        "latency_max_s": round(max(latencies, default=float("nan")), 3),
        "mailboxes_per_service_account": len({address for address, _, _ in changes} - set(lost)),
        "goal_met": len(addresses) >= 2000 and not lost and p99 <= GOAL_P99_S,
        "refused_connections": after["refused_connections"],
        "resubscribed_during_run": resubscribed,
        "error_codes": after["error_codes"],
    }


# -- reading -----------------------------------------------------------------------------------------------------


async def read_cost(items: int) -> dict[str, Any]:
    emulator = EwsEmulator(tls=False, find_count_limit=items + 1)
    emulator.add_mailbox(MAILBOX)
    emulator.add_service_account(USER, PASSWORD)
    await emulator.start()
    today = datetime.now(UTC).date()
    window = Window.days_ahead(today, 30)
    for n in range(items):
        start = window.start + timedelta(days=1 + n % 28, hours=8 + n % 8, minutes=n % 4 * 15)
        emulator.create_item_as_outlook(
            MAILBOX, subject=f"Item {n}", start=start, end=start + timedelta(minutes=30), free_busy="Busy"
        )
    source = EwsSource("bench", service_endpoint=emulator.url, username=USER, password=PASSWORD, auth_type="basic")
    answers: list[bytes] = []
    send = requests.Session.send

    def keeping(session: requests.Session, request: Any, **kwargs: Any) -> Any:
        response = send(session, request, **kwargs)
        if b"FindItem" in (request.body or b""):
            answers.append(response.content)
        return response

    requests.Session.send = keeping  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        result = await source.read_delta(MAILBOX, window, None)
        whole = time.perf_counter() - started
    finally:
        requests.Session.send = send  # type: ignore[method-assign]
        account = await asyncio.to_thread(source.account, MAILBOX)
    [body] = [answer for answer in answers if answer.count(b"CalendarItem>") > 10]
    bridge_us = _per_item(lambda: _bridge(body), items)
    exchangelib_us = _per_item(lambda: _exchangelib(body, account), items, rounds=2)
    await source.close()
    await emulator.stop()
    return {
        "items_offered": items,
        "items_read": len(result.upserts),
        "answer_bytes": len(body),
        "ews_us_per_item": round(bridge_us, 1),
        "exchangelib_us_per_item": round(exchangelib_us, 1),
        "read_delta_us_per_item": round(whole / items * 1e6, 1),
    }


def _calendar_items(body: bytes) -> list[Any]:
    return list(to_xml(body).iter(f"{wire.TNS}CalendarItem"))


def _bridge(body: bytes) -> int:
    return len([wire.to_appointment(item) for item in wire.decode_items(_calendar_items(body))])


def _exchangelib(body: bytes, account: Any) -> int:
    return len([BridgeCalendarItem.from_xml(elem=elem, account=account) for elem in _calendar_items(body)])


def _per_item(run: Any, items: int, rounds: int = 10) -> float:
    assert run() == items
    started = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - started) / rounds / items * 1e6


# -- the command line --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="calendar changes per second, one per mailbox")
    parser.add_argument("--access", choices=("impersonation", "delegate"), default="impersonation")
    parser.add_argument("--hanging-connection-limit", type=int, default=HANGING_CONNECTION_LIMIT)
    parser.add_argument("--streams", type=int, default=3, help="the source's `streams` setting (delegate access)")
    parser.add_argument("--max-subscriptions", type=int, default=MAX_SUBSCRIPTIONS)
    parser.add_argument("--grace", type=float, default=40.0, help="how long to wait for the last reports (s)")
    parser.add_argument("--setup-within", type=float, default=300.0, help="how long subscribing may take (s)")
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        count, access, hanging, subscriptions = args.serve
        asyncio.run(serve(int(count), access, int(hanging), int(subscriptions)))
        return
    reading = asyncio.run(read_cost(args.items))
    watching = asyncio.run(watch(args))
    print(
        f"CalendarView: {reading['items_read']} of {reading['items_offered']} items read, "
        f"{reading['answer_bytes']} bytes; per item: the source {reading['ews_us_per_item']} µs, exchangelib's "
        f"objects {reading['exchangelib_us_per_item']} µs, a whole first read_delta "
        f"{reading['read_delta_us_per_item']} µs"
    )
    print(
        f"watching, one service account ({watching['access']}, streams: {args.streams}), limits per budget: "
        f"{args.hanging_connection_limit} streaming connections, {args.max_subscriptions} subscriptions"
    )
    print(
        f"  offered {watching['mailboxes_offered']} mailboxes: {watching['mailboxes_caught_up']} subscribed and "
        f"caught up in {watching['setup_s']} s over {watching['streaming_connections']} streaming connections "
        f"({watching['subscriptions']}); {watching['refused_connections']} connections refused"
    )
    print(
        f"  changes: offered {watching['changes_offered_per_s']}/s, achieved {watching['changes_achieved_per_s']}/s "
        f"(p99 {watching['change_lag_p99_s']} s behind schedule); {watching['changes_reported']} of "
        f"{watching['changes']} reported, {watching['lost']} lost"
    )
    print(
        f"  scheduled change → watcher report: p50 {watching['latency_p50_s']} s, p99 {watching['latency_p99_s']} s, "
        f"max {watching['latency_max_s']} s; mailboxes whose change was reported: "
        f"{watching['mailboxes_per_service_account']} (goal ≥ 2,000 at p99 ≤ {GOAL_P99_S:g} s: "
        f"{'met' if watching['goal_met'] else 'not met'})"
    )
    errors = watching["lost"] + watching["refused_connections"] + sum(watching["error_codes"].values())
    print(json.dumps({**reading, **watching, "errors": errors}))


if __name__ == "__main__":
    main()
