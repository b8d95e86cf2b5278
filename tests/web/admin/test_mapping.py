"""The Mapping page over HTTP: the editors, Validate with each problem at its line, Preview against the mirror,
and a bridge without a mapping file it may write, where the page is read-only. Applying is tested end to end in
the browser (test_browser_mapping.py)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest

from bridge.store import Database
from bridge.store.mapping_state import mapping_history, record_applied
from bridge.templates import default_mapping_path, mapping_digest
from tests.web import Client
from tests.web.admin.test_session import CSRF, sign_in

SHIPPED = default_mapping_path().read_text(encoding="utf-8")
DIGEST = mapping_digest(SHIPPED.encode())
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def csrf_of(client: Client) -> str:
    await sign_in(client)
    found = CSRF.search(await (await client.get("/admin/mapping")).text())
    assert found is not None
    return found[1]


async def check(client: Client, yaml: str, action: str = "validate") -> tuple[int, str]:
    form = {"csrf_token": await csrf_of(client), "editor": "text", "yaml": yaml, "based_on": DIGEST, "action": action}
    answer = await client.post("/admin/mapping/check", data=form)
    return answer.status, html.unescape(await answer.text())


async def test_the_page_shows_the_file_in_both_editors_and_says_why_it_is_read_only(app_client: Client) -> None:
    await sign_in(app_client)
    page = html.unescape(await (await app_client.get("/admin/mapping")).text())

    assert "Read-only: the shipped default mapping is in force" in page
    assert 'id="show_busy" name="show_busy" value="meeting"' in page
    assert "# Where appointments overlap, the state listed first wins" in page  # the YAML, comments and all
    assert "Apply this mapping" not in page


async def test_validate_lists_every_problem_at_its_line_and_changes_nothing(app_client: Client) -> None:
    broken = SHIPPED.replace("days_ahead: 90", "days_ahead: 0").replace("busy: meeting", "busy: meting")

    status, page = await check(app_client, broken)

    assert status == 400
    assert "2 problem(s); nothing was changed" in page
    assert '<a href="#line-11">line 11</a>: days_ahead: 0 is less than the minimum of 1' in page
    assert "<a href=\"#line-16\">line 16</a>: show.busy: template 'meting' is not defined under templates" in page
    assert '<li id="line-16" class="bad"><code>  busy: meting</code>' in page
    assert default_mapping_path().read_text(encoding="utf-8") == SHIPPED


async def test_a_form_edit_is_checked_as_the_text_it_makes(app_client: Client) -> None:
    form = {
        "csrf_token": await csrf_of(app_client),
        "editor": "form",
        "based_on": DIGEST,
        "action": "validate",
        "ignore_prefix": "*",
        "days_ahead": "30",
        "show_busy": "meeting",
        "show_oof": "holiday",
        "precedence": "oof, busy",
        "template_rows": "2",
        "t0_name": "meeting",
        "t0_show_as": "busy",
        "t1_name": "holiday",
        "t1_show_as": "oof",
        "t1_all_day": "on",
    }
    answer = await app_client.post("/admin/mapping/check", data=form)
    page = html.unescape(await answer.text())

    assert answer.status == 200
    assert "The mapping is valid." in page
    assert "  holiday: {show_as: oof, all_day: true}\n" in page  # in the YAML editor, in the file's flow style
    assert "# Exchange free/busy state -> workforce template" in page


@pytest.mark.usefixtures("calendar")
async def test_preview_lists_the_appointments_a_candidate_would_change(app_client: Client) -> None:
    status, page = await check(app_client, SHIPPED.replace("  busy: meeting\n", ""), action="preview")

    assert status == 200
    assert "0 created, 0 updated, 2 withdrawn" in page  # the customer call and the private doctor's appointment
    assert 'data-item="meeting" data-kind="withdrawn"' in page
    assert "(private: not shown)" in page
    assert "Apply this mapping" not in page  # read-only here


async def test_apply_is_refused_where_the_mapping_is_read_only(app_client: Client) -> None:
    form = {"csrf_token": await csrf_of(app_client), "yaml": SHIPPED.replace("90", "30"), "based_on": DIGEST}
    answer = await app_client.post("/admin/mapping/apply", data=form)

    assert answer.status == 409
    assert default_mapping_path().read_text(encoding="utf-8") == SHIPPED


async def test_the_history_shows_who_applied_what_with_its_diff(app_client: Client, db: Database) -> None:
    with db.session() as session:
        record_applied(session, "a" * 64, SHIPPED, NOON, "the bridge's first start")
        edited = SHIPPED.replace("days_ahead: 90", "days_ahead: 30")
        record_applied(session, "b" * 64, edited, NOON + timedelta(minutes=1), "ops (admin page)", 4)
        assert len(mapping_history(session, 5)) == 2
    await sign_in(app_client)

    page = html.unescape(await (await app_client.get("/admin/mapping")).text())

    assert "ops (admin page)" in page
    assert "-days_ahead: 90\n+days_ahead: 30\n" in page
    assert "the first mapping recorded" in page


async def test_a_rollback_to_anything_but_the_mapping_before_the_newest_changes_nothing(
    app_client: Client, db: Database
) -> None:
    with db.session() as session:
        record_applied(session, "a" * 64, SHIPPED, NOON, "the bridge's first start")
        record_applied(session, "b" * 64, SHIPPED.replace("90", "30"), NOON + timedelta(minutes=1), "ops", 0)
        oldest = mapping_history(session, 2)[1].id
    form = {"csrf_token": await csrf_of(app_client), "to": str(oldest + 7), "based_on": DIGEST}

    answer = await app_client.post("/admin/mapping/rollback", data=form, allow_redirects=False)

    assert (answer.status, answer.headers["Location"]) == (303, "/admin/mapping")
    page = await (await app_client.get("/admin/mapping")).text()
    assert "That is not the mapping before the newest any more; nothing was changed." in page
    with db.session() as session:
        assert len(mapping_history(session, 5)) == 2
