"""`presence-bridge demo` runs the whole chain with nothing configured."""

from __future__ import annotations

from bridge.demo import run_demo


async def test_the_demo_shows_mapped_changes_as_they_arrive() -> None:
    lines: list[str] = []

    changes = await run_demo(duration_s=6, change_every_s=1.0, out=lines.append)

    subjects = {change["appointment"].get("subject") for change in changes}
    templates = {change["appointment"]["template"] for change in changes}
    assert {"Customer visit", "Daily stand-up", "Vacation", "Maybe: workshop", "Home office"} <= subjects
    assert {"Plant tour", "Trade fair"} <= subjects  # from the on-premises mailbox, through EWS
    assert {c["workforce_id"] for c in changes if c["appointment"].get("subject") == "Trade fair"} == {"E1004"}
    assert None in subjects  # the private appointment, without its subject
    assert not any(subject and subject.lstrip().startswith("*") for subject in subjects)
    assert "Focus time" not in subjects  # free is never shown
    assert {"meeting", "absence", "tentative", "remote"} <= templates
    assert any(line.startswith("  -- ") for line in lines)  # people kept changing their calendars
    assert any(line.startswith("  metrics        http://127.0.0.1:") for line in lines)
    assert any(line.startswith("  status         presence-bridge status --config ") for line in lines)
    assert sum(line.startswith("  #") for line in lines) == len(changes)
