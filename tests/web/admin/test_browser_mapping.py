"""The Mapping and Explain pages in Debian's chromium, against the demo (fixtures in tests/web/admin/conftest.py).

An edit is previewed, applied and rolled back; the workforce receiver must get exactly what each preview listed.
Each test leaves the demo's mapping as it found it. Screenshots go to docs/img/ with `UPDATE_SCREENSHOTS=1`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from bridge.store.mapping_state import mapping_history
from tests.web.admin.conftest import DemoThread

KINDS = {"created": "appointment.created", "updated": "appointment.updated", "withdrawn": "appointment.deleted"}
ADELE = "adelev@contoso.com"


def received(demo: DemoThread) -> list[dict[str, Any]]:
    async def changes() -> list[dict[str, Any]]:
        return list(demo.demo.workforce.changes)

    return demo.call(changes)


def settle(demo: DemoThread, quiet_s: float = 1.5, within: float = 30.0) -> list[dict[str, Any]]:
    """The receiver's changes once none has arrived for `quiet_s`."""
    deadline, seen, since = time.monotonic() + within, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(received(demo))
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.1)
    return received(demo)


def previewed(page: Page) -> list[tuple[str, str, str]]:
    """The preview's rows as (mailbox, change type as the webhook names it, appointment id)."""
    rows = []
    for heading in page.locator("#preview h3").all():
        address = heading.inner_text().split(":")[0]
        table = heading.locator("xpath=following-sibling::table[1]")
        for row in table.locator("tbody tr").all():
            rows.append((address, KINDS[row.get_attribute("data-kind") or ""], row.get_attribute("data-item") or ""))
    return rows


def as_sent(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(change["mailbox"], change["type"], change["appointment"]["id"]) for change in changes]


def mapping_file(demo: DemoThread) -> Path:
    path = demo.demo.service.mapping.path
    assert demo.demo.config.templates is not None, "the demo's mapping must be a file the page may write"
    return path


def test_an_edit_is_previewed_applied_and_rolled_back_and_the_workforce_gets_exactly_each_preview(
    admin_page: Page, demo: DemoThread, screenshots: Path
) -> None:
    page = admin_page
    original = mapping_file(demo).read_text()
    before = len(settle(demo))
    page.goto(f"{demo.url}/admin/mapping")
    page.get_by_label("Template for tentative").fill("")
    page.get_by_label("Template for workingElsewhere").fill("meeting")

    page.get_by_role("region", name="Edit in a form").get_by_role("button", name="Preview").click()

    listed = previewed(page)
    assert ("leeg@contoso.com", "appointment.deleted") in [(mailbox, kind) for mailbox, kind, _ in listed]
    assert ("leeg@contoso.com", "appointment.updated") in [(mailbox, kind) for mailbox, kind, _ in listed]
    expect(page.get_by_role("region", name="Preview")).to_contain_text("Maybe: workshop")
    page.screenshot(path=screenshots / "admin-mapping-preview.png", full_page=True)
    assert len(received(demo)) == before  # a preview sends nothing

    page.get_by_role("button", name="Apply this mapping").click()

    expect(page.get_by_role("status")).to_have_text(
        f"Mapping applied: {len(listed)} change(s) sent to the workforce system."
    )
    applied = settle(demo)[before:]
    assert sorted(as_sent(applied)) == sorted(listed)
    edited = mapping_file(demo).read_text()
    assert "  workingElsewhere: meeting\n" in edited
    assert [line for line in edited.splitlines() if "#" in line] == [
        line for line in original.splitlines() if "#" in line
    ]
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("admin (admin page)")
    history.get_by_text("diff", exact=True).first.click()
    expect(history).to_contain_text("+  workingElsewhere: meeting")
    page.screenshot(path=screenshots / "admin-mapping.png", full_page=True)

    page.get_by_role("button", name="Roll back to this").click()

    expect(page.get_by_role("status")).to_contain_text("Mapping applied")
    rolled_back = settle(demo)[before + len(applied) :]
    undone = {"appointment.deleted": "appointment.created", "appointment.updated": "appointment.updated"}
    assert sorted(as_sent(rolled_back)) == sorted((m, undone[kind], item) for m, kind, item in listed)
    assert mapping_file(demo).read_text() == original
    newest = demo.query(lambda session: mapping_history(session, 1))[0]
    assert newest.applied_by.startswith("admin (admin page, rollback to the mapping applied ")


def test_an_invalid_edit_shows_its_line_and_changes_nothing(
    admin_page: Page, demo: DemoThread, screenshots: Path
) -> None:
    page = admin_page
    original = mapping_file(demo).read_text()
    before = len(settle(demo))
    history = demo.query(lambda session: mapping_history(session, 1))
    page.goto(f"{demo.url}/admin/mapping")
    yaml = page.get_by_role("region", name="Edit the YAML")
    yaml.get_by_label("The mapping file").fill(original.replace("days_ahead: 90", "days_ahead: 0"))

    yaml.get_by_role("button", name="Validate").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("1 problem(s); nothing was changed")
    expect(alert).to_contain_text("line 11: days_ahead: 0 is less than the minimum of 1")
    expect(page.locator("#line-11")).to_have_class("bad")
    expect(page.get_by_role("button", name="Apply this mapping")).to_have_count(0)
    page.screenshot(path=screenshots / "admin-mapping-invalid.png", full_page=True)
    yaml.get_by_role("button", name="Preview").click()  # a preview of it is refused the same way
    expect(page.get_by_role("alert")).to_contain_text("line 11")
    assert mapping_file(demo).read_text() == original
    assert demo.query(lambda session: mapping_history(session, 1)) == history
    assert len(settle(demo)) == before


def test_explain_says_why_a_hidden_and_a_private_appointment_look_as_they_do(
    admin_page: Page, demo: DemoThread, screenshots: Path
) -> None:
    page = admin_page
    page.goto(f"{demo.url}/admin/explain")
    page.get_by_label("Mailbox").select_option(ADELE)
    page.get_by_role("button", name="Show its appointments").click()
    appointments = page.get_by_role("region", name=f"Appointments of {ADELE}")
    expect(appointments).to_contain_text("*Dentist")
    expect(appointments).not_to_contain_text("Doctor")  # private: its subject stays private here too

    page.get_by_role("link", name="Explain *Dentist").click()

    explanation = page.get_by_role("region", name="“*Dentist”: hidden")
    expect(explanation).to_contain_text("hidden: its subject '*Dentist' starts with the ignore character '*'")
    expect(explanation).to_contain_text("Nothing: the bridge has never shown it to the workforce system.")
    page.screenshot(path=screenshots / "admin-explain-hidden.png", full_page=True)

    page.get_by_role("link", name="Explain the private appointment").click()

    explanation = page.get_by_role("region", name="A private appointment: shown without subject")
    expect(explanation).to_contain_text("without its subject: it is private")
    sent = explanation.get_by_role("table")
    expect(sent).to_contain_text("appointment.created")
    expect(sent).to_contain_text("none (the key is absent)")
    page.screenshot(path=screenshots / "admin-explain.png", full_page=True)
