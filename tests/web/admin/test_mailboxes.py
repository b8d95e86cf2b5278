"""The Mailboxes page over HTTP: the list, its filters, and forms that are refused without changing anything."""

from __future__ import annotations

from sqlmodel import select

from bridge import admin
from bridge.store import Database, MailboxRow, MailboxStatus
from tests.web import Client
from tests.web.admin.test_session import CSRF, sign_in


def add_mailboxes(db: Database, *rows: tuple[str, str, MailboxStatus]) -> None:
    with db.session() as session:
        for address, workforce_id, status in rows:
            session.add(MailboxRow(address=address, workforce_id=workforce_id, source="online", status=status))
        session.commit()


async def test_the_list_filters_by_text_and_status(app_client: Client, db: Database) -> None:
    add_mailboxes(
        db,
        ("adele@contoso.com", "E1001", MailboxStatus.ACTIVE),
        ("grady@contoso.com", "E1002", MailboxStatus.DISABLED),
        ("lee@contoso.com", "E1003", MailboxStatus.ACTIVE),
    )
    await sign_in(app_client)
    everyone = await (await app_client.get("/admin/mailboxes")).text()
    assert "3 mailboxes" in everyone
    found = await (await app_client.get("/admin/mailboxes?q=E100&status=active")).text()
    assert "2 mailboxes" in found
    assert "grady@contoso.com" not in found
    literal = await (await app_client.get("/admin/mailboxes?q=%25")).text()  # LIKE's wildcard, taken literally
    assert "0 mailboxes" in literal


async def test_an_unknown_status_filter_is_named_and_left_out(app_client: Client, db: Database) -> None:
    add_mailboxes(db, ("adele@contoso.com", "E1001", MailboxStatus.ACTIVE))
    await sign_in(app_client)
    page = await (await app_client.get("/admin/mailboxes?status=sleeping")).text()
    assert "There is no status &#39;sleeping&#39;" in page
    assert "1 mailbox," not in page
    assert "adele@contoso.com" in page


async def test_a_roster_with_a_bad_line_changes_nothing(app_client: Client, db: Database) -> None:
    await sign_in(app_client)
    csrf = CSRF.search(await (await app_client.get("/admin/mailboxes")).text())
    assert csrf is not None
    lines = "new@contoso.com, E2001\nnot-an-address, E2002\n"
    answer = await app_client.post(
        "/admin/mailboxes/add", data={"csrf_token": csrf[1], "lines": lines, "action": "add"}, allow_redirects=False
    )
    assert answer.status == 400
    text = await answer.text()
    assert "line 2: &#39;not-an-address&#39; is not a mail address" in text
    assert "new@contoso.com, E2001" in text  # the text is kept to be fixed
    with db.session() as session:
        assert session.exec(select(MailboxRow)).all() == []


async def form_token(client: Client, path: str) -> str:
    found = CSRF.search(await (await client.get(path)).text())
    assert found is not None
    return found[1]


async def test_disable_with_a_reason_then_resync(app_client: Client, db: Database) -> None:
    add_mailboxes(db, ("adele@contoso.com", "E1001", MailboxStatus.ACTIVE))
    await sign_in(app_client)
    csrf = await form_token(app_client, "/admin/mailboxes")
    back = "/admin/mailboxes?q=adele"

    disabled = await app_client.post(
        "/admin/mailboxes/adele@contoso.com/disable",
        data={"csrf_token": csrf, "reason": "on leave until March", "back": back},
        allow_redirects=False,
    )

    assert (disabled.status, disabled.headers["Location"]) == (303, back)
    page = await (await app_client.get(back)).text()
    assert "adele@contoso.com disabled: it no longer syncs." in page
    assert "on leave until March" in page
    with db.session() as session:
        row = session.exec(select(MailboxRow)).one()
        assert (row.status, row.status_reason) == (MailboxStatus.DISABLED, "on leave until March")
        generation = row.dirty_generation
    await app_client.post("/admin/mailboxes/adele@contoso.com/resync", data={"csrf_token": csrf})
    with db.session() as session:
        assert session.exec(select(MailboxRow)).one().dirty_generation == generation + 1


async def test_remove_asks_first_then_removes(app_client: Client, db: Database) -> None:
    add_mailboxes(db, ("adele@contoso.com", "E1001", MailboxStatus.ACTIVE))
    await sign_in(app_client)

    question = await app_client.get("/admin/mailboxes/adele@contoso.com/remove?back=https://evil.example/")
    text = await question.text()
    assert "Remove adele@contoso.com?" in text
    assert 'value="/admin/mailboxes"' in text  # the way back is only ever the list
    with db.session() as session:
        assert session.exec(select(MailboxRow)).one().status is MailboxStatus.ACTIVE
    csrf = CSRF.search(text)
    assert csrf is not None
    removed = await app_client.post("/admin/mailboxes/adele@contoso.com/remove", data={"csrf_token": csrf[1]})

    assert "adele@contoso.com removed: the workforce system is told 0 appointment(s) are gone." in await removed.text()
    with db.session() as session:
        row = session.exec(select(MailboxRow)).one()
        assert (row.status, row.status_reason) == (MailboxStatus.DISABLED, admin.REMOVED)


async def test_an_action_on_an_unknown_mailbox_changes_nothing(app_client: Client, db: Database) -> None:
    await sign_in(app_client)
    csrf = await form_token(app_client, "/admin/mailboxes")

    answer = await app_client.post("/admin/mailboxes/nobody@contoso.com/enable", data={"csrf_token": csrf})

    assert "The bridge knows no mailbox nobody@contoso.com; nothing was changed." in await answer.text()
    with db.session() as session:
        assert session.exec(select(MailboxRow)).all() == []
