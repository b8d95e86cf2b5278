"""Signing in to the admin page, the session cookie, the idle timeout and the CSRF check, over plain HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from bridge.store import Database
from bridge.store.models import AdminSessionRow
from bridge.web.admin.session import COOKIE
from tests.web import ADMIN_TOKEN, WORKFORCE_TOKEN, Client

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sessions(db: Database) -> int:
    with db.session() as session:
        return len(session.exec(select(AdminSessionRow)).all())


async def sign_in_form(client: Client, path: str = "/admin/sign-in") -> str:
    answer = await client.get(path)
    assert answer.status == 200
    found = CSRF.search(await answer.text())
    assert found is not None
    return found[1]


async def sign_in(client: Client, token: str = ADMIN_TOKEN, next_page: str = "") -> tuple[int, str, str]:
    """The answer's status, Location and Set-Cookie for the session."""
    csrf = await sign_in_form(client)
    form = {"csrf_token": csrf, "token": token, "next": next_page}
    answer = await client.post("/admin/sign-in", data=form, allow_redirects=False)
    cookies = [value for value in answer.headers.getall("Set-Cookie", []) if value.startswith(f"{COOKIE}=")]
    return answer.status, answer.headers.get("Location", ""), "".join(cookies)


async def test_a_page_without_a_session_sends_to_the_sign_in_form(app_client: Client) -> None:
    answer = await app_client.get("/admin/mailboxes?q=adele", allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/admin/sign-in?next=%2Fadmin%2Fmailboxes%3Fq%3Dadele"


async def test_an_admin_token_signs_in_with_a_strict_http_only_cookie(app_client: Client) -> None:
    status, location, cookie = await sign_in(app_client, next_page="/admin/mailboxes")
    assert (status, location) == (303, "/admin/mailboxes")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    # No Expires or Max-Age: the server ends the session; Secure only over TLS (public_url is http here).
    assert attributes == {"httponly", "path", "samesite"}
    assert "SameSite=Strict" in cookie
    assert "Path=/admin/" in cookie
    page = await app_client.get("/admin/")
    assert page.status == 200
    assert "Signed in as <strong>admin</strong>" in await page.text()


@pytest.mark.parametrize("config", ["https://bridge.example.com"], indirect=True)
async def test_cookies_are_secure_behind_tls(app_client: Client) -> None:
    # A proxy in front terminates TLS (public_url says so): the sign-in form's cookie, set as the session's is, is
    # Secure, so this plain-HTTP client does not even send it back.
    answer = await app_client.get("/admin/sign-in")
    assert "Secure" in answer.headers["Set-Cookie"].split("; ")


async def test_a_workforce_token_is_refused(app_client: Client, db: Database) -> None:
    status, _, _ = await sign_in(app_client, WORKFORCE_TOKEN)
    assert status == 403
    assert sessions(db) == 0
    assert (await app_client.get("/admin/", allow_redirects=False)).status == 303


async def test_an_unknown_token_is_refused(app_client: Client) -> None:
    status, _, _ = await sign_in(app_client, "not-a-token-of-this-bridge")
    assert status == 401


async def test_sign_in_goes_nowhere_but_the_admin_page(app_client: Client) -> None:
    for elsewhere in ("https://evil.example/", "//evil.example/admin/", "/admin//evil.example", "/api/v1/changes"):
        _, location, _ = await sign_in(app_client, next_page=elsewhere)
        assert location == "/admin/"


async def test_a_sign_in_without_the_forms_csrf_token_is_refused(app_client: Client, db: Database) -> None:
    await sign_in_form(app_client)
    answer = await app_client.post("/admin/sign-in", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert answer.status == 403
    assert sessions(db) == 0


async def test_a_form_without_its_csrf_token_is_refused(app_client: Client) -> None:
    await sign_in(app_client)
    answer = await app_client.post("/admin/sign-out", data={}, allow_redirects=False)
    assert answer.status == 403
    assert "Nothing was changed" in await answer.text()
    forged = await app_client.post("/admin/sign-out", data={"csrf_token": "0" * 64}, allow_redirects=False)
    assert forged.status == 403
    assert (await app_client.get("/admin/")).status == 200  # still signed in


async def test_sign_out_ends_the_session_on_the_server(app_client: Client, db: Database) -> None:
    await sign_in(app_client)
    secret = app_client.session.cookie_jar.filter_cookies(app_client.make_url("/admin/"))[COOKIE]
    csrf = CSRF.search(await (await app_client.get("/admin/")).text())
    assert csrf is not None
    answer = await app_client.post("/admin/sign-out", data={"csrf_token": csrf[1]}, allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/admin/sign-in?reason=signed-out")
    assert sessions(db) == 0
    # A copy of the cookie kept from before opens nothing.
    replayed = await app_client.get("/admin/", cookies={COOKIE: secret.value}, allow_redirects=False)
    assert replayed.status == 303


async def test_an_idle_session_ends(app_client: Client, db: Database) -> None:
    await sign_in(app_client)
    with db.session() as session:
        row = session.exec(select(AdminSessionRow)).one()
        row.seen_at -= timedelta(minutes=31)
        session.commit()
    answer = await app_client.get("/admin/mailboxes", allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"].endswith("&reason=expired")
    assert sessions(db) == 0


async def test_pages_forbid_scripts_and_framing(app_client: Client) -> None:
    answer = await app_client.get("/admin/sign-in")
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert (await app_client.get("/admin", allow_redirects=False)).headers["Location"] == "/admin/"
