"""What reading a CalendarView costs the EWS source per item, and how many mailboxes one service account watches.

The EWS emulator (in this process, plain HTTP) holds 800 appointments in one mailbox; the source reads the window
once through exchangelib, and the FindItem answer's bytes are kept. Then, on those same bytes:

- the source's path: lxml parses the answer (as exchangelib does inside its service call) and the bridge's own
  decoder (`bridge/sources/ews_wire.py`) turns the CalendarItem elements into domain `Appointment`s;
- exchangelib's path: the same parse, then `CalendarItem.from_xml` per element (what `account.calendar.view()`
  returns), the cost the source avoids.

The mailbox count is computed from Exchange's documented on-premises defaults (docs/ews-source.md cites them):
one streaming connection carries at most 200 subscriptions, and a service account may hold 3 streaming
connections at once (HangingConnectionLimit), so 600; it is not measured against a server here.

Run: .venv/bin/python bench/ews.py [--items 800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from exchangelib import CalendarItem
from exchangelib.util import to_xml

from bridge.domain import Window
from bridge.emulators.ews import EwsEmulator
from bridge.sources import ews_wire as wire
from bridge.sources.ews import EwsSource

MAILBOX = "alice@corp.example"
SUBSCRIPTIONS_PER_CONNECTION = 200
HANGING_CONNECTION_LIMIT = 3


async def measure(items: int) -> dict[str, Any]:
    emulator = EwsEmulator(tls=False, find_count_limit=items + 1)
    emulator.add_mailbox(MAILBOX)
    emulator.add_service_account("CORP\\svc-bench", "bench-password")
    await emulator.start()
    today = datetime.now(UTC).date()
    window = Window.days_ahead(today, 30)
    for n in range(items):
        start = window.start + timedelta(days=1 + n % 28, hours=8 + n % 8, minutes=n % 4 * 15)
        emulator.create_item_as_outlook(
            MAILBOX, subject=f"Item {n}", start=start, end=start + timedelta(minutes=30), free_busy="Busy"
        )
    source = EwsSource(
        "bench", service_endpoint=emulator.url, username="CORP\\svc-bench", password="bench-password", auth_type="basic"
    )
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
        account = await asyncio.to_thread(source._account, MAILBOX)
    [body] = [answer for answer in answers if answer.count(b"CalendarItem>") > 10]
    bridge_us = _per_item(lambda: _bridge(body), items)
    exchangelib_us = _per_item(lambda: _exchangelib(body, account), items, rounds=2)
    await source.close()
    await emulator.stop()
    return {
        "items": len(result.upserts),
        "answer_bytes": len(body),
        "ews_us_per_item": round(bridge_us, 1),
        "exchangelib_us_per_item": round(exchangelib_us, 1),
        "read_delta_us_per_item": round(whole / items * 1e6, 1),
        "mailboxes_per_service_account": SUBSCRIPTIONS_PER_CONNECTION * HANGING_CONNECTION_LIMIT,
    }


def _calendar_items(body: bytes) -> list[Any]:
    return list(to_xml(body).iter(f"{wire.TNS}CalendarItem"))


def _bridge(body: bytes) -> int:
    return len([wire.to_appointment(item) for item in wire.decode_items(_calendar_items(body))])


def _exchangelib(body: bytes, account: Any) -> int:
    return len([CalendarItem.from_xml(elem=elem, account=account) for elem in _calendar_items(body)])


def _per_item(run: Any, items: int, rounds: int = 10) -> float:
    assert run() == items
    started = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - started) / rounds / items * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=800)
    args = parser.parse_args()
    result = asyncio.run(measure(args.items))
    print(f"CalendarView answer: {result['items']} items, {result['answer_bytes']} bytes")
    print(
        f"per item: the source (lxml + the bridge's decoder) {result['ews_us_per_item']} µs, exchangelib's "
        f"objects {result['exchangelib_us_per_item']} µs; a whole first read_delta (emulator and HTTP included) "
        f"{result['read_delta_us_per_item']} µs"
    )
    print(
        f"one service account watches {result['mailboxes_per_service_account']} mailboxes at once "
        f"({HANGING_CONNECTION_LIMIT} streaming connections × {SUBSCRIPTIONS_PER_CONNECTION} subscriptions)"
    )
    print(json.dumps({key: result[key] for key in ("ews_us_per_item", "mailboxes_per_service_account")}))


if __name__ == "__main__":
    main()
