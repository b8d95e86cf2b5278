"""The Mapping and Explain pages in Debian's chromium, against the demo (fixtures in tests/web/admin/conftest.py).

An edit is previewed, applied and rolled back; the workforce receiver must get exactly what each preview listed.
Each test leaves the demo's mapping as it found it. Screenshots go to docs/img/ with `UPDATE_SCREENSHOTS=1`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from bridge.demo import DemoRun
from bridge.store.mapping_state import AppliedMapping, mapping_history
from tests.web.admin.conftest import IN_BROWSER

pytestmark = IN_BROWSER

KINDS = {"created": "appointment.created", "updated": "appointment.updated", "withdrawn": "appointment.deleted"}
ADELE = "adelev@contoso.com"


async def settle(demo: DemoRun, quiet_s: float = 1.5, within: float = 30.0) -> list[dict[str, Any]]:
    """The receiver's changes once none has arrived for `quiet_s`."""
    loop = asyncio.get_running_loop()
    deadline, seen, since = loop.time() + within, -1, loop.time()
    while loop.time() < deadline:
        if len(demo.workforce.changes) != seen:
            seen, since = len(demo.workforce.changes), loop.time()
        elif loop.time() - since >= quiet_s:
            break
        await asyncio.sleep(0.1)
    return list(demo.workforce.changes)


async def previewed(page: Page) -> list[tuple[str, str, str]]:
    """The preview's rows as (mailbox, change type as the webhook names it, appointment id)."""
    rows = []
    for heading in await page.locator("#preview h3").all():
        address = (await heading.inner_text()).split(":")[0]
        table = heading.locator("xpath=following-sibling::table[1]")
        for row in await table.locator("tbody tr").all():
            kind, item = await row.get_attribute("data-kind"), await row.get_attribute("data-item")
            rows.append((address, KINDS[kind or ""], item or ""))
    return rows


def as_sent(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(change["mailbox"], change["type"], change["appointment"]["id"]) for change in changes]


def mapping_file(demo: DemoRun) -> Path:
    assert demo.config.templates is not None, "the demo's mapping must be a file the page may write"
    return demo.service.mapping.path


def newest_applied(demo: DemoRun) -> AppliedMapping:
    with demo.service.db.session() as session:
        return mapping_history(session, 1)[0]


async def test_an_edit_is_previewed_applied_and_rolled_back_and_the_workforce_gets_exactly_each_preview(
    admin_page: Page, demo: DemoRun, screenshots: Path
) -> None:
    page = admin_page
    original = mapping_file(demo).read_text()
    before = len(await settle(demo))
    await page.goto(f"{demo.service.url}/admin/mapping")
    await page.get_by_label("Template for tentative").fill("")
    await page.get_by_label("Template for workingElsewhere").fill("meeting")

    await page.get_by_role("region", name="Edit in a form").get_by_role("button", name="Preview").click()

    listed = await previewed(page)
    kinds = [(mailbox, kind) for mailbox, kind, _ in listed]
    assert ("leeg@contoso.com", "appointment.deleted") in kinds
    assert ("leeg@contoso.com", "appointment.updated") in kinds
    await expect(page.get_by_role("region", name="Preview")).to_contain_text("Maybe: workshop")
    await page.screenshot(path=screenshots / "admin-mapping-preview.png", full_page=True)
    assert len(demo.workforce.changes) == before  # a preview sends nothing

    await page.get_by_role("button", name="Apply this mapping").click()

    sent = f"Mapping applied: {len(listed)} change(s) sent to the workforce system."
    await expect(page.get_by_role("status")).to_have_text(sent)
    applied = (await settle(demo))[before:]
    assert sorted(as_sent(applied)) == sorted(listed)
    edited = mapping_file(demo).read_text()
    assert "  workingElsewhere: meeting\n" in edited
    comments = [line for line in original.splitlines() if "#" in line]
    assert [line for line in edited.splitlines() if "#" in line] == comments
    history = page.get_by_role("region", name="History")
    await expect(history).to_contain_text("admin (admin page)")
    await history.get_by_text("diff", exact=True).first.click()
    await expect(history).to_contain_text("+  workingElsewhere: meeting")
    await page.screenshot(path=screenshots / "admin-mapping.png", full_page=True)

    await page.get_by_role("button", name="Roll back to this").click()

    await expect(page.get_by_role("status")).to_contain_text("Mapping applied")
    rolled_back = (await settle(demo))[before + len(applied) :]
    undone = {"appointment.deleted": "appointment.created", "appointment.updated": "appointment.updated"}
    assert sorted(as_sent(rolled_back)) == sorted((mailbox, undone[kind], item) for mailbox, kind, item in listed)
    assert mapping_file(demo).read_text() == original
    assert newest_applied(demo).applied_by.startswith("admin (admin page, rollback to the mapping applied ")


async def test_an_invalid_edit_shows_its_line_and_changes_nothing(
    admin_page: Page, demo: DemoRun, screenshots: Path
) -> None:
    page = admin_page
    original = mapping_file(demo).read_text()
    before = len(await settle(demo))
    history = newest_applied(demo)
    await page.goto(f"{demo.service.url}/admin/mapping")
    yaml = page.get_by_role("region", name="Edit the YAML")
    await yaml.get_by_label("The mapping file").fill(original.replace("days_ahead: 90", "days_ahead: 0"))

    await yaml.get_by_role("button", name="Validate").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("1 problem(s); nothing was changed")
    await expect(alert).to_contain_text("line 11: days_ahead: 0 is less than the minimum of 1")
    await expect(page.locator("#line-11")).to_have_class("bad")
    await expect(page.get_by_role("button", name="Apply this mapping")).to_have_count(0)
    await page.screenshot(path=screenshots / "admin-mapping-invalid.png", full_page=True)
    await yaml.get_by_role("button", name="Preview").click()  # a preview of it is refused the same way
    await expect(page.get_by_role("alert")).to_contain_text("line 11")
    assert mapping_file(demo).read_text() == original
    assert newest_applied(demo) == history
    assert len(await settle(demo)) == before


async def test_explain_says_why_a_hidden_and_a_private_appointment_look_as_they_do(
    admin_page: Page, demo: DemoRun, screenshots: Path
) -> None:
    page = admin_page
    await page.goto(f"{demo.service.url}/admin/explain")
    await page.get_by_label("Mailbox").select_option(ADELE)
    await page.get_by_role("button", name="Show its appointments").click()
    appointments = page.get_by_role("region", name=f"Appointments of {ADELE}")
    await expect(appointments).to_contain_text("*Dentist")
    await expect(appointments).not_to_contain_text("Doctor")  # private: its subject stays private here too

    await page.get_by_role("link", name="Explain *Dentist").click()

    explanation = page.get_by_role("region", name="“*Dentist”: hidden")
    await expect(explanation).to_contain_text("hidden: its subject '*Dentist' starts with the ignore character '*'")
    await expect(explanation).to_contain_text("Nothing: the bridge has never shown it to the workforce system.")
    await page.screenshot(path=screenshots / "admin-explain-hidden.png", full_page=True)

    await page.get_by_role("link", name="Explain the private appointment").click()

    explanation = page.get_by_role("region", name="A private appointment: shown without subject")
    await expect(explanation).to_contain_text("without its subject: it is private")
    sent = explanation.get_by_role("table")
    await expect(sent).to_contain_text("appointment.created")
    await expect(sent).to_contain_text("none (the key is absent)")
    await page.screenshot(path=screenshots / "admin-explain.png", full_page=True)
