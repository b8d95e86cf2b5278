"""The edges of what is shown, end to end through the Graph emulator and the real msgraph-sdk: zero-length
appointments, appointments crossing the window's edges, appointments without a free/busy state."""

from __future__ import annotations

from tests.world import World, ready


async def test_edges_of_the_window_and_of_free_busy_reach_the_workforce_system_as_documented(world: World) -> None:
    await ready(world)
    world.outlook("Overnight", days=-1, start=22, end=30)  # yesterday 22:00 to today 06:00
    world.outlook("Handover", days=1, start=9, end=9)  # zero length
    world.outlook("At midnight", days=0, start=0, end=0)  # zero length, at the window's start
    world.outlook("Long trip", days=89, start=0, end=72)  # runs past the window's end (90 days)
    world.outlook("No state", days=2, show_as="unknown")
    world.outlook("Yesterday", days=-1, start=9, end=10)

    changes = await world.settled()

    shown = {c["appointment"]["subject"]: c["appointment"] for c in changes}
    assert sorted(shown) == ["At midnight", "Handover", "Long trip", "Overnight"]
    assert {c["type"] for c in changes} == {"appointment.created"}
    assert shown["Handover"]["start"] == shown["Handover"]["end"]
    assert shown["Overnight"]["start"] < shown["Overnight"]["end"]
    assert shown["Overnight"]["start"].endswith("T22:00:00Z")  # whole, not clipped to the window
    assert shown["Long trip"]["end"] > shown["Long trip"]["start"]
    assert all(a["free_busy"] != "unknown" for a in shown.values())
