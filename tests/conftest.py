"""Fixtures shared by every test: a fresh database on each backend the bridge supports."""

from __future__ import annotations

import base64
import secrets
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import psycopg
import pytest
from azure.identity.aio import ClientSecretCredential
from psycopg import sql

from bridge.config import GraphSourceConfig
from bridge.sources.graph import GraphSource, graph_source
from bridge.store import Database
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from emulators.harness import OnPrem, free_port, write_config
from emulators.workforce import WorkforceReceiver

# The Graph and EWS emulators' fixtures (graph_emulator, tenant_app, adele, receiver, ews, ...) and the whole bridge on
# loopback (world) serve every test package.
pytest_plugins = ["tests.emulators.graph_fixtures", "tests.emulators.ews_fixtures", "tests.world"]

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# Nine levels of ten aliases each: 372 bytes of YAML that stand for 10^9 strings once expanded ("billion laughs"); the
# last anchor, `*i`, is the whole bomb. Without a bound, checking or quoting it took 3 GB and ended in MemoryError.
BILLION_LAUGHS = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{','.join([f'*{chr(97 + n)}'] * 10)}]\n" for n in range(8)
)


class DatabaseUrl(NamedTuple):
    """Where a test's database lives: the URL, and on PostgreSQL the schema that keeps it apart."""

    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseUrl]:
    """An empty database, not yet upgraded: a file in tmp_path, or a new schema dropped afterwards."""
    if request.param == "sqlite":
        yield DatabaseUrl(f"sqlite:///{tmp_path / 'bridge.db'}")
        return
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering")
    schema = f"test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield DatabaseUrl(POSTGRES_URL, schema)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def db(database_url: DatabaseUrl) -> Iterator[Database]:
    """A `Database` on each backend, upgraded to the newest revision."""
    database = Database(database_url.url, schema=database_url.schema)
    try:
        database.upgrade()
        yield database
    finally:
        database.close()


WORKFORCE_SECRET = "whsec_" + base64.b64encode(b"workforce-receiver-test-key-0123").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-key-the-receiver-knows!!").decode()  # a sender gets it wrong


@pytest.fixture
async def workforce() -> AsyncIterator[WorkforceReceiver]:
    """The workforce system's webhook receiver on loopback; it checks signatures made with WORKFORCE_SECRET."""
    receiver = WorkforceReceiver(WORKFORCE_SECRET)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def write_bridge_config(
    path: Path,
    *,
    graph: GraphEmulator,
    app: AppRegistration,
    mailbox: str,
    workforce_url: str,
    secret: str,
    database_url: str,
    port: int,
    extra: str = "",
    onprem: OnPrem | None = None,
    also: list[tuple[str, str]] | None = None,
    graph_extra: str = "",
) -> Path:
    """A config file for a bridge on `port` that watches `mailbox` (workforce id E1001) and `also` ((address,
    workforce id)) in the Graph emulator (and `onprem`'s mailboxes in the EWS emulator); `graph_extra` is more of
    the Graph source's keys."""
    return write_config(
        path,
        graph=graph,
        app=app,
        port=port,
        workforce_url=workforce_url,
        secret=secret,
        database_url=database_url,
        mailboxes=[(mailbox, "E1001"), *(also or [])],
        extra=extra,
        onprem=onprem,
        graph_extra=graph_extra,
    )


@pytest.fixture
def config_path(
    tmp_path: Path,
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    workforce: WorkforceReceiver,
) -> Path:
    """A config for a whole bridge process (`presence-bridge run`) with its SQLite file beside it, bridge.db."""
    return run_config(tmp_path, graph_emulator, tenant_app, adele, workforce, free_port())


def run_config(
    tmp_path: Path,
    graph: GraphEmulator,
    app: AppRegistration,
    adele: DirectoryUser,
    workforce: WorkforceReceiver,
    port: int,
    onprem: OnPrem | None = None,
) -> Path:
    """`config_path`'s config, on `port` and with `onprem`'s mailboxes too."""
    return write_bridge_config(
        tmp_path / "config.yaml",
        graph=graph,
        app=app,
        mailbox=adele.user_principal_name,
        workforce_url=workforce.url,
        secret=WORKFORCE_SECRET,
        database_url=f"sqlite:///{tmp_path / 'bridge.db'}",
        port=port,
        onprem=onprem,
    )


def emulator_credential(
    emulator: GraphEmulator, app: AppRegistration, secret: str | None = None
) -> ClientSecretCredential:
    """azure-identity's credential for the app in the emulated tenant (or `secret`, to be refused), over TLS."""
    return ClientSecretCredential(
        app.tenant_id,
        app.client_id,
        secret or app.client_secret,
        authority=emulator.authority,
        connection_verify=str(emulator.ca_file),
    )


def graph_source_for(emulator: GraphEmulator, app: AppRegistration, secret: str | None = None) -> GraphSource:
    """The bridge's Graph source for the emulated tenant, with the app's secret (or `secret`, to be refused)."""
    return graph_source(
        GraphSourceConfig(
            name="online",
            tenant_id=app.tenant_id,
            client_id=app.client_id,
            client_secret=secret or app.client_secret,
            authority_host=emulator.authority,
            graph_url=emulator.graph_url,
            ca_file=emulator.ca_file,
        )
    )


@pytest.fixture
async def online_source(graph_emulator: GraphEmulator, tenant_app: AppRegistration) -> AsyncIterator[GraphSource]:
    """The bridge's Graph source for the emulated tenant, closed after the test."""
    made = graph_source_for(graph_emulator, tenant_app)
    try:
        yield made
    finally:
        await made.close()


ADELE = ("adele@contoso.com", "E1001")


def offline_config_text(
    *, mailboxes: Sequence[tuple[str, str]] = (), database_url: str | None = None, port: int | None = None
) -> str:
    """A config whose one Graph source is never contacted: for tests of what the bridge does with its config and
    its store. `mailboxes`: (address, workforce id)."""
    lines = [f"database_url: {database_url}"] if database_url is not None else []
    lines += [
        "public_url: https://bridge.example.com",
        "sources:",
        "  online:",
        "    kind: graph",
        "    tenant_id: 11111111-2222-3333-4444-555555555555",
        "    client_id: 66666666-7777-8888-9999-000000000000",
        "    client_secret: graph-secret-value",
        "mailboxes:" if mailboxes else "mailboxes: []",
        *(f'  - {{address: {address}, workforce_id: "{workforce_id}"}}' for address, workforce_id in mailboxes),
    ]
    if port is not None:
        lines.append(f"listen: {{port: {port}}}")
    return "\n".join(lines) + "\n"


def offline_config(path: Path, *, extra: str = "", **text: Any) -> Path:
    """`offline_config_text(**text)` in a file, followed by `extra` (more top-level YAML)."""
    path.write_text(offline_config_text(**text) + textwrap.dedent(extra).lstrip(), encoding="utf-8")
    return path


def cli_url(database_url: DatabaseUrl) -> str:
    """The URL a config file gives: on PostgreSQL the test's schema travels as the connection's search_path."""
    if database_url.schema is None:
        return database_url.url
    return f"{database_url.url}?options={quote(f'-csearch_path={database_url.schema}')}"


@pytest.fixture
def cli_config(database_url: DatabaseUrl, tmp_path: Path) -> Path:
    """A config file for the command line on each backend (one Graph source, never contacted by these tests)."""
    return offline_config(
        tmp_path / "config.yaml", mailboxes=[ADELE], database_url=cli_url(database_url), port=free_port()
    )
