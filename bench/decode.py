"""Per-event cost of decoding a 1,000-event calendarView/delta page: the Graph source vs. the SDK's models.

The source's path is what `GraphSource.read_delta` does with a page's bytes (msgspec structs → domain
`Appointment`s); the SDK's is kiota's JSON parse node building `DeltaGetResponse` with its `Event` models, as
`client.users.by_user_id(..).calendar_view.delta.get()` would. Both decode the same bytes.

Run: .venv/bin/python bench/decode.py
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.users.item.calendar_view.delta.delta_get_response import DeltaGetResponse

from bridge.sources import graph_wire as wire

EVENTS = 1000
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "graph"


def build_page() -> bytes:
    """1,000 full events shaped like the documented delta page (a few ids and times varied)."""
    template = json.loads((FIXTURES / "delta_page_1.json").read_text())["value"][0]
    events = []
    for index in range(EVENTS):
        event = copy.deepcopy(template)
        event["id"] = f"AAMkAGI1AAAo{index:06d}="
        event["subject"] = f"Appointment {index}"
        event["start"]["dateTime"] = f"2026-12-{1 + index % 28:02d}T09:00:00.0000000"
        event["end"]["dateTime"] = f"2026-12-{1 + index % 28:02d}T10:00:00.0000000"
        events.append(event)
    page = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)", "value": events}
    page["@odata.deltaLink"] = "https://graph.microsoft.com/v1.0/users/x/calendarView/delta?$deltatoken=abc"
    return json.dumps(page).encode()


def decode_with_source(body: bytes) -> int:
    page = wire.decode_page(body)
    return len([wire.to_appointment(event) for event in page.value])


def decode_with_sdk(body: bytes) -> int:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", body)
    response = node.get_object_value(DeltaGetResponse)
    return len(response.value or [])


def per_event_us(decode: Callable[[bytes], int], body: bytes, runs: int) -> tuple[float, int]:
    """The median cost per event offered, and how many events the decoder returned (the warm-up run's count)."""
    decoded = decode(body)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        decode(body)
        samples.append((time.perf_counter() - started) / EVENTS * 1e6)
    return statistics.median(samples), decoded


def main() -> None:
    body = build_page()
    source_us, source_events = per_event_us(decode_with_source, body, runs=50)
    sdk_us, sdk_events = per_event_us(decode_with_sdk, body, runs=3)
    print(f"page offered: {EVENTS} events, {len(body) / 1024:.0f} KiB")
    print(f"graph source (msgspec → Appointment): {source_us:10.2f} µs/event, {source_events} events decoded")
    print(f"msgraph-sdk models (kiota):           {sdk_us:10.2f} µs/event, {sdk_events} events decoded")
    print(f"ratio sdk / source:                   {sdk_us / source_us:10.1f}×")
    result = {
        "events_offered": EVENTS,
        "source_events_decoded": source_events,
        "sdk_events_decoded": sdk_events,
        "source_us_per_event": round(source_us, 2),
        "sdk_us_per_event": round(sdk_us, 2),
        "ratio": round(sdk_us / source_us, 1),
        "errors": (EVENTS - source_events) + (EVENTS - sdk_events),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
