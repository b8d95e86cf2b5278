"""The Explain page over HTTP: a mailbox's appointments with their verdicts, one explained, and what is unknown."""

from __future__ import annotations

import html

import pytest

from tests.web import Client
from tests.web.admin.test_session import sign_in


async def page(client: Client, query: str) -> tuple[int, str]:
    await sign_in(client)
    answer = await client.get(f"/admin/explain?{query}")
    return answer.status, html.unescape(await answer.text())


@pytest.mark.usefixtures("calendar")
async def test_a_mailboxs_appointments_are_listed_with_their_verdicts_private_subjects_left_out(
    app_client: Client,
) -> None:
    status, text = await page(app_client, "mailbox=adele@contoso.com")

    assert status == 200
    assert '<option value="adele@contoso.com" selected>' in text
    assert "Customer call" in text
    assert "Doctor" not in text  # private
    assert '<span class="badge shown-without-subject">shown without subject</span>' in text


@pytest.mark.usefixtures("calendar")
async def test_a_hidden_appointment_is_explained_by_the_ignore_character(app_client: Client) -> None:
    status, text = await page(app_client, "mailbox=adele@contoso.com&item=hidden")

    assert status == 200
    assert "hidden: its subject '*Errand' starts with the ignore character '*'" in text
    assert "Nothing: the bridge has never shown it to the workforce system." in text


@pytest.mark.usefixtures("calendar")
async def test_an_unknown_appointment_or_mailbox_is_said_so(app_client: Client) -> None:
    status, text = await page(app_client, "mailbox=adele@contoso.com&item=cancelled")
    assert status == 404
    assert "Cancelled and declined meetings" in text
    status, text = await page(app_client, "mailbox=nobody@contoso.com")
    assert (status, "The bridge knows no mailbox nobody@contoso.com." in text) == (404, True)
