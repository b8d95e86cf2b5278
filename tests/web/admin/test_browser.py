"""The admin page in Debian's chromium, against the demo: what an administrator does, click by click.

The tests take the screenshots docs/admin.md shows of the pages they pass through (`UPDATE_SCREENSHOTS=1`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from playwright.async_api import Locator, Page, expect

from bridge import admin
from bridge.demo import DemoRun
from bridge.store import MailboxRow, MailboxStatus
from bridge.store.work import find_mailbox
from tests.web.admin.conftest import IN_BROWSER, sign_in_page
from tests.world import wait_until

pytestmark = IN_BROWSER

ADELE, GRADY, LEE = "adelev@contoso.com", "gradya@contoso.com", "leeg@contoso.com"


def mailbox(demo: DemoRun, address: str) -> MailboxRow:
    with demo.service.db.session() as session:
        row = find_mailbox(session, address)
    assert row is not None
    return row


def settled(demo: DemoRun) -> bool:
    """Every demo mailbox read once, and those in Exchange Online watched by a Graph subscription."""
    with demo.service.db.session() as session:
        rows, _ = admin.find_mailboxes(session, admin.MailboxSearch())
    return all(
        row.mailbox.last_synced_at and (row.subscription_expires_at or row.mailbox.source != "online") for row in rows
    )


def row_of(page: Page, address: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=address, exact=True))


async def test_sign_in_and_sign_out(anonymous_page: Page, demo: DemoRun, screenshots: Path) -> None:
    page = anonymous_page
    await page.goto(f"{demo.service.url}/admin/mailboxes")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_label("Admin API token")).to_be_focused()
    await page.screenshot(path=screenshots / "admin-sign-in.png")

    await page.get_by_label("Admin API token").fill(demo.admin_token)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page).to_have_url(f"{demo.service.url}/admin/mailboxes")
    await expect(page.get_by_text("Signed in as admin")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(f"{demo.service.url}/admin/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not [cookie for cookie in await page.context.cookies() if cookie.get("name") == "presence_bridge_admin"]


async def test_a_workforce_token_is_refused(anonymous_page: Page, demo: DemoRun) -> None:
    await sign_in_page(anonymous_page, demo, demo.workforce_token)

    await expect(anonymous_page.get_by_role("alert")).to_contain_text("has no admin scope")
    await expect(anonymous_page.get_by_role("navigation", name="Admin pages")).to_have_count(0)
    await anonymous_page.goto(f"{demo.service.url}/admin/")
    await expect(anonymous_page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_the_overview_shows_the_demo(admin_page: Page, demo: DemoRun, screenshots: Path) -> None:
    await wait_until(lambda: settled(demo))
    await admin_page.reload()

    sources = admin_page.get_by_role("region", name="Sources")
    await expect(row_of(admin_page, "online").first).to_contain_text("graph")
    await expect(sources.get_by_role("row")).to_have_count(3)  # a header and the online and on-premises sources
    await expect(sources).not_to_contain_text("unreachable")
    await expect(admin_page.get_by_role("region", name="Subscriptions expiring soonest")).to_contain_text(ADELE)
    await admin_page.screenshot(path=screenshots / "admin-overview.png", full_page=True)


async def test_a_form_without_its_csrf_token_is_refused(admin_page: Page, demo: DemoRun) -> None:
    await admin_page.goto(f"{demo.service.url}/admin/mailboxes?q=leeg")
    disable = admin_page.get_by_role("button", name=f"Disable {LEE}")
    await disable.locator("xpath=..").locator("input[name=csrf_token]").evaluate("field => field.remove()")

    await disable.click()

    await expect(admin_page.get_by_role("heading", name="Refused")).to_be_visible()
    await expect(admin_page.get_by_role("alert")).to_contain_text("did not come from this page")
    assert mailbox(demo, LEE).status is MailboxStatus.ACTIVE


async def test_a_disabled_mailbox_is_enabled_again_from_the_page(admin_page: Page, demo: DemoRun) -> None:
    await demo.service.db.run(lambda session: admin.disable(session, GRADY, "left the company (HR ticket 4711)"))
    await admin_page.goto(f"{demo.service.url}/admin/mailboxes?status=disabled")
    await expect(row_of(admin_page, GRADY)).to_contain_text("left the company (HR ticket 4711)")
    enabled_at = datetime.now(UTC)

    await admin_page.get_by_role("button", name=f"Enable {GRADY}").click()

    await expect(admin_page.get_by_role("status")).to_have_text(f"{GRADY} enabled: it syncs again.")
    await expect(admin_page).to_have_url(f"{demo.service.url}/admin/mailboxes?status=disabled")
    row = mailbox(demo, GRADY)
    assert (row.status, row.status_reason) == (MailboxStatus.ACTIVE, None)
    # And it syncs again: the bridge reads it after it was enabled.
    await wait_until(lambda: (mailbox(demo, GRADY).last_synced_at or enabled_at) > enabled_at)


async def test_many_mailboxes_are_added_at_once(admin_page: Page, demo: DemoRun, screenshots: Path) -> None:
    people = [("MeganB@contoso.com", "Megan Bowen", "E2001"), ("AlexW@contoso.com", "Alex Wilber", "E2002")]
    people.append(("PattiF@contoso.com", "Patti Fernandez", "E2003"))
    for address, name, _ in people:
        demo.graph.add_user(address, name)
    await admin_page.goto(f"{demo.service.url}/admin/mailboxes")
    # The demo has two sources (online, onprem), so each line names one.
    lines = "".join(f"{address}, {workforce_id}, online\n" for address, _, workforce_id in people)
    await admin_page.get_by_label("One mailbox a line").fill(lines)

    await admin_page.get_by_role("button", name="Preview").click()
    await expect(admin_page.get_by_role("status")).to_contain_text("3 would be added")
    assert await demo.service.db.run(lambda session: find_mailbox(session, people[0][0])) is None
    await admin_page.get_by_role("button", name="Add", exact=True).click()

    await expect(admin_page.get_by_role("status")).to_contain_text("3 were added, 0 re-enabled, 0 updated; 0 unchanged")
    await admin_page.screenshot(path=screenshots / "admin-mailboxes.png", full_page=True)
    for address, _, workforce_id in people:
        row = mailbox(demo, address)
        assert (row.workforce_id, row.source, row.status) == (workforce_id, "online", MailboxStatus.ACTIVE)
        await expect(row_of(admin_page, address.lower())).to_contain_text(workforce_id)
    # Each is read from Exchange as any mailbox is.
    await wait_until(lambda: all(mailbox(demo, address).last_synced_at for address, _, _ in people))


async def test_purge_shows_a_dry_run_then_deletes_on_confirmation(
    admin_page: Page, demo: DemoRun, screenshots: Path
) -> None:
    start = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    own = events(demo, ADELE)
    made = await workforce_creates(demo, ADELE, "Training (booked by the workforce system)", start)
    await admin_page.goto(f"{demo.service.url}/admin/mailboxes?q=adele")

    await admin_page.get_by_role("link", name=f"Purge the bridge's items from {ADELE}").click()

    dry_run = admin_page.get_by_role("table")
    await expect(dry_run).to_contain_text("Training (booked by the workforce system)")
    await expect(dry_run.get_by_role("row")).to_have_count(2)  # the header and the one item the bridge made
    assert made in events(demo, ADELE)  # a dry run deletes nothing
    await admin_page.screenshot(path=screenshots / "admin-purge.png", full_page=True)
    await admin_page.get_by_role("button", name="Delete this item").click()

    await expect(admin_page.get_by_role("status")).to_have_text(
        f"{ADELE}: 1 item(s) the bridge made were deleted from Exchange"
    )
    assert events(demo, ADELE) == own  # people's own appointments are all still there


def events(demo: DemoRun, address: str) -> dict[str, str | None]:
    """Exchange's events of a mailbox: id → subject."""
    return {event["id"]: event.get("subject") for event in demo.graph.events(address)}


async def workforce_creates(demo: DemoRun, address: str, subject: str, day: datetime) -> str:
    """An appointment the workforce system books through the REST API, 13:00-14:00 on `day`; its Exchange id."""
    start = day + timedelta(hours=13)
    body = {"template": "meeting", "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{demo.service.url}/api/v1/mailboxes/{address}/appointments",
            json={**body, "subject": subject},
            headers={"Authorization": f"Bearer {demo.workforce_token}"},
        ) as answer,
    ):
        assert answer.status == 201, await answer.text()
        return str((await answer.json())["exchange_id"])
