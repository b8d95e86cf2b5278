"""The composition point: each configured source with its calendar and its own way of detecting changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS, build_sources, configure_sources
from bridge.sources.ews import EwsSource
from bridge.sources.ews_watch import EwsWatcher
from bridge.sources.graph import GraphSource
from bridge.sources.watching import MailboxWatch, MalformedNotification, WebhookSubscriptions

HYBRID = """
public_url: https://bridge.example.com
sources:
  online:
    kind: graph
    tenant_id: 11111111-2222-3333-4444-555555555555
    client_id: 66666666-7777-8888-9999-000000000000
    client_secret: graph-secret-value
  onprem:
    kind: ews
    service_endpoint: https://mail.example.com/EWS/Exchange.asmx
    username: EXAMPLE\\svc-presence
    password: ews-secret-value
mailboxes: []
"""


class Recorded:
    """A `ChangeWiring` that notes which way each source took."""

    def __init__(self) -> None:
        self.watches: list[MailboxWatch] = []
        self.webhooks: list[WebhookSubscriptions] = []

    def watch(self, watch: MailboxWatch) -> None:
        self.watches.append(watch)

    def keep_subscriptions(self, subscriptions: WebhookSubscriptions) -> None:
        self.webhooks.append(subscriptions)


@pytest.fixture
def hybrid(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(HYBRID, encoding="utf-8")
    return path


async def test_graph_is_kept_by_webhook_subscriptions_and_ews_watched_on_its_own_connections(hybrid: Path) -> None:
    sources = configure_sources(load_config(hybrid))
    wirings = {name: Recorded() for name in sources}
    try:
        for name, source in sources.items():
            source.changes.attach(wirings[name])

        online, onprem = sources["online"], sources["onprem"]
        assert isinstance(online.calendar, GraphSource)
        assert (wirings["online"].webhooks, wirings["online"].watches) == ([online.calendar], [])
        assert isinstance(onprem.calendar, EwsSource)
        [watch] = wirings["onprem"].watches
        assert wirings["onprem"].webhooks == []  # EWS has no webhook subscriptions: it is watched by streams or pulls
        assert isinstance(watch, EwsWatcher)
        assert watch is onprem.changes
        assert (online.directory, onprem.directory) == (online.calendar, None)  # only Entra ID lists groups
    finally:
        for source in sources.values():
            await source.calendar.close()


async def test_build_sources_gives_the_same_calendars_for_the_commands(hybrid: Path) -> None:
    calendars = build_sources(load_config(hybrid))
    try:
        assert {name: type(calendar) for name, calendar in calendars.items()} == {
            "online": GraphSource,
            "onprem": EwsSource,
        }
    finally:
        for calendar in calendars.values():
            await calendar.close()


def test_the_webhook_receiver_reads_notifications_as_the_bridges_values() -> None:
    body = (
        b'{"value": [{"subscriptionId": "s1", "clientState": "c", "changeType": "updated"},'
        b' {"subscriptionId": "s2", "lifecycleEvent": "missed"}]}'
    )
    first, second = WEBHOOK_NOTIFICATIONS(body)
    assert (first.subscription_id, first.client_state, first.lifecycle_event) == ("s1", "c", None)
    assert (second.subscription_id, second.client_state, second.lifecycle_event) == ("s2", None, "missed")
    with pytest.raises(MalformedNotification, match="malformed notification body"):
        WEBHOOK_NOTIFICATIONS(b'{"value": [{"clientState": "x"}]}')
