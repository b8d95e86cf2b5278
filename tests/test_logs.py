"""The bridge's logs: JSON lines, the source and mailbox a line is about, per-source levels, the start and stop
lines, the audit trail, and no secret at any level, even with every library at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import __version__, logs
from bridge.cli import main
from emulators.graph_model import AppRegistration
from tests.world import API_TOKEN, ONPREM_MAILBOX, SECRET, SERVICE_ACCOUNT, World, at, ready, wait_until

MAIL_BODY = "Quarterly figures attached, keep them between us"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything the bridge logs, as its `--log-format json` handler writes it; the root level restored after."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(logging.DEBUG, json_lines=True, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logs.redact_secrets(())
        for name in (*logs.CHATTY_LOGGERS, *logs.TRAFFIC_LOGGERS):
            logging.getLogger(name).setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def moment(days: int, hour: float) -> datetime:
    return datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)


async def test_hybrid_flows_at_debug_log_no_secret_header_mail_body_or_calendar_xml(
    captured: io.StringIO, hybrid: World, tenant_app: AppRegistration
) -> None:
    await ready(hybrid)
    ews = hybrid.ews
    assert ews is not None
    await wait_until(lambda: any(s["connected"] for s in ews.subscriptions()))
    ews.create_item_as_outlook(ONPREM_MAILBOX, subject="Plant tour", start=moment(1, 9), end=moment(1, 10))
    hybrid.graph.create_event_as_outlook(
        hybrid.mailbox, {"subject": "Customer visit", "start": at(1, 9), "end": at(1, 10), "showAs": "busy"}
    )
    await hybrid.changes(2)
    body = {"template": "absence", "start": moment(3, 0).isoformat(), "end": moment(4, 0).isoformat()}
    assert (await hybrid.api("POST", f"/api/v1/mailboxes/{ONPREM_MAILBOX}/appointments", body))[0] == 201
    mail = {"to": ["bob@contoso.com"], "cc": [], "subject": "Figures", "body": MAIL_BODY, "content_type": "text"}
    assert (await hybrid.api("POST", "/api/v1/mail", mail))[0] == 202
    await hybrid.service.stop()

    text = captured.getvalue()
    for secret in (SERVICE_ACCOUNT[1], tenant_app.client_secret, SECRET, SECRET.removeprefix("whsec_"), API_TOKEN):
        assert secret not in text
    assert "authorization" not in text.lower()
    assert MAIL_BODY not in text
    assert "Envelope" not in text  # no SOAP request or answer
    logged = lines(captured)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in logged)
    # Several instances may log to one place: each line of the service names the instance that wrote it.
    assert {line.get("instance") for line in logged if line["logger"].startswith("bridge.")} == {hybrid.service.owner}
    assert any(line.get("source") == "onprem" and line.get("mailbox") == ONPREM_MAILBOX for line in logged)
    messages = [line["message"] for line in logged]
    [started] = [m for m in messages if m.startswith(f"presence-bridge {__version__} started")]
    assert "sources online (graph), onprem (ews); mailboxes 2 active; listening on http://127.0.0.1:" in started
    assert any(m.startswith("presence-bridge stopped after ") for m in messages)


def test_configured_secrets_and_credentials_are_redacted_wherever_they_appear(captured: io.StringIO) -> None:
    logs.apply({}, ["pa55-w0rd-value"])
    log = logging.getLogger("exchangelib.util")

    log.warning("retrying with pa55-w0rd-value; headers {'Authorization': 'Basic c3ZjOnBhNTU='}")
    try:
        raise RuntimeError("login as svc with pa55-w0rd-value refused")
    except RuntimeError:
        logging.getLogger("bridge.sources.ews").exception("Bearer eyJ0eXAi.abc.def refused")

    text = captured.getvalue()
    assert "pa55-w0rd-value" not in text
    assert "c3ZjOnBhNTU=" not in text
    assert "eyJ0eXAi" not in text
    assert "retrying with [redacted]; headers {'Authorization': 'Basic [redacted]'}" in text
    assert "Bearer [redacted] refused" in text


def test_a_handler_added_elsewhere_sees_no_secret_either(captured: io.StringIO) -> None:
    # As the Windows service's log file and event log handlers are: not made by bridge.logs.
    elsewhere = io.StringIO()
    handler = logging.StreamHandler(elsewhere)
    logging.getLogger().addHandler(handler)
    logs.redact_secrets(["pa55-w0rd-value"])
    try:
        logging.getLogger("urllib3.connectionpool").warning(
            "sent %s", {"Authorization": "NTLM TlRMTVNTUAAD", "pw": "pa55-w0rd-value"}
        )
    finally:
        logging.getLogger().removeHandler(handler)

    assert elsewhere.getvalue() == "sent {'Authorization': 'NTLM [redacted]', 'pw': '[redacted]'}\n"


def test_a_source_can_log_at_its_own_level(captured: io.StringIO) -> None:
    logs.configure(logging.WARNING, json_lines=True, stream=captured)
    logs.apply({"onprem": "DEBUG"}, [])
    log = logging.getLogger("bridge.sources.ews")

    with logs.about(source="onprem", mailbox="nestor@contoso.com"):
        log.debug("read 3 items")
    with logs.about(source="online"):
        log.debug("not shown: online keeps the bridge's level")
    log.info("not shown: about no source")

    assert [(line["message"], line["source"], line["mailbox"]) for line in lines(captured)] == [
        ("read 3 items", "onprem", "nestor@contoso.com")
    ]


def test_text_lines_name_the_source_and_mailbox() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logs.configure(logging.INFO, stream=stream)
    try:
        with logs.about(source="online", mailbox="adele@contoso.com"):
            logging.getLogger("bridge.mailbox_sync").warning("throttled")
    finally:
        root.removeHandler(handler)

    assert stream.getvalue().rstrip().endswith("WARNING bridge.mailbox_sync [online] [adele@contoso.com]: throttled")


def test_a_command_line_change_is_logged_with_who_made_it(
    cli_config: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logs.AUDIT)
    assert main(["db", "upgrade", "--config", str(cli_config)]) == 0
    assert next(r.getMessage() for r in caplog.records if r.name == logs.AUDIT).startswith("db upgrade by ")
    caplog.clear()

    assert main(["mailboxes", "disable", "adele@contoso.com", "--config", str(cli_config)]) == 0
    assert main(["mailboxes", "list", "--config", str(cli_config)]) == 0

    [record] = [r for r in caplog.records if r.name == logs.AUDIT]
    assert record.getMessage().startswith("mailboxes disable adele@contoso.com by ")
    assert record.getMessage().endswith(" on the command line")
