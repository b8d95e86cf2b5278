"""The configuration file: one error listing every problem by key and line, secrets that never leak."""

from __future__ import annotations

import base64
import json
import os
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given

from bridge.config import (
    ApiToken,
    Config,
    EwsSourceConfig,
    GraphSourceConfig,
    GroupConfig,
    ListenConfig,
    MailboxConfig,
    NotifyConfig,
    SyncConfig,
    WorkforceConfig,
    load_config,
)
from bridge.errors import UserError
from bridge.templates import default_mapping_path
from tests.fuzzing import YAML_TEXT, fuzz_settings, loaded_or_refused, mutations

REPO = Path(__file__).resolve().parent.parent
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "66666666-7777-8888-9999-000000000000"
SIGNING_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
API_TOKEN = "tok-0123456789abcdef"

BASE = f"""
public_url: https://bridge.example.com
sources:
  online:
    kind: graph
    tenant_id: {TENANT}
    client_id: {CLIENT}
    client_secret: graph-secret-value
mailboxes:
  - {{address: adele@contoso.com, workforce_id: "E1001"}}
  - {{address: alex@contoso.com, workforce_id: "E1002"}}
"""
EWS = """
  onprem:
    kind: ews
    service_endpoint: https://mail.example.com/EWS/Exchange.asmx
    username: EXAMPLE\\svc-presence
    password: ews-password-value
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as caught:
        load(tmp_path, text)
    return caught.value.render()


def with_ews(text: str = BASE) -> str:
    """`text` with an EWS source added next to the Graph one, its mailboxes still on the Graph source."""
    text = text.replace('"}', '", source: online}')
    return text.replace("mailboxes:", EWS.lstrip("\n") + "mailboxes:")


# --- a valid config ------------------------------------------------------------------------------------------


def test_a_minimal_config_takes_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.path == tmp_path / "config.yaml"
    assert config.database_url == f"sqlite:///{tmp_path / 'presence-bridge.db'}"
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8080)
    assert config.templates is None  # the shipped default mapping
    assert config.sync == SyncConfig(timedelta(hours=6), 1.0, 5)
    assert config.workforce == WorkforceConfig(url=None, signing_secret=None)
    assert config.api_tokens == ()


def test_a_graph_source_is_read_with_its_defaults(tmp_path: Path) -> None:
    source = load(tmp_path, BASE).sources["online"]
    assert source == GraphSourceConfig(
        name="online", tenant_id=TENANT, client_id=CLIENT, client_secret="graph-secret-value"
    )
    assert (source.authority_host, source.graph_url) == (
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com/v1.0",
    )
    assert source.max_concurrency == 4


def test_an_ews_source_is_validated_and_read(tmp_path: Path) -> None:
    source = load(tmp_path, with_ews()).sources["onprem"]
    assert source == EwsSourceConfig(
        name="onprem",
        service_endpoint="https://mail.example.com/EWS/Exchange.asmx",
        username="EXAMPLE\\svc-presence",
        password="ews-password-value",
    )
    assert (source.auth_type, source.version, source.impersonation, source.verify_tls) == ("ntlm", None, True, True)
    assert (source.watch, source.streams) == ("streaming", 3)


def test_an_ews_source_may_poll_and_hold_more_streams(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    watch: pull\n    streams: 6\n    password: ews")
    source = load(tmp_path, text).sources["onprem"]
    assert isinstance(source, EwsSourceConfig)
    assert (source.watch, source.streams) == ("pull", 6)


def test_an_ews_source_needs_at_least_one_stream(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    streams: 0\n    password: ews")
    assert "sources.onprem.streams: 0 is less than the minimum of 1" in problems(tmp_path, text)


def test_a_mailbox_without_source_belongs_to_the_only_source(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.mailboxes == (
        MailboxConfig("adele@contoso.com", "E1001", "online"),
        MailboxConfig("alex@contoso.com", "E1002", "online"),
    )
    assert config.mailboxes_for("online") == config.mailboxes


def test_a_mailbox_is_found_by_address_whatever_its_case(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).mailbox("Adele@Contoso.COM") == MailboxConfig("adele@contoso.com", "E1001", "online")


def test_graph_hook_urls_hang_off_public_url_without_a_double_slash(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace("bridge.example.com", "bridge.example.com/"))
    assert config.graph_notification_url == "https://bridge.example.com/hooks/graph"
    assert config.graph_lifecycle_url == "https://bridge.example.com/hooks/graph/lifecycle"


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "secret-from-env")
    monkeypatch.setenv("WORKFORCE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("WF_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("CHAT_WEBHOOK_URL", "https://chat.example.com/hooks/T0123")
    config = load_config(REPO / "config.example.yaml")
    assert [m.workforce_id for m in config.mailboxes] == ["E1001", "E1002"]
    assert config.notify is not None
    assert config.notify.webhook_url == "https://chat.example.com/hooks/T0123"
    assert config.api_tokens == (ApiToken("workforce", API_TOKEN, frozenset({"workforce"})),)


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "mine.yaml").write_text(default_mapping_path().read_text())
    config = load(tmp_path, "database_url: sqlite:///state/bridge.db\ntemplates: maps/mine.yaml\n" + BASE)
    assert config.templates == tmp_path / "maps" / "mine.yaml"
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    config = load(tmp_path, "database_url: sqlite:////var/lib/bridge.db\n" + BASE)
    assert config.database_url == "sqlite:////var/lib/bridge.db"


def test_the_shown_database_url_hides_its_password(tmp_path: Path) -> None:
    config = load(tmp_path, "database_url: postgresql://bridge:hunter2@db.example.com/bridge\n" + BASE)
    assert config.database_url_shown == "postgresql://bridge:***@db.example.com/bridge"


# --- secrets -------------------------------------------------------------------------------------------------


def test_a_secret_may_name_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_SECRET", "from-the-environment")
    config = load(tmp_path, BASE.replace("graph-secret-value", "${GRAPH_SECRET}"))
    assert config.sources["online"] == GraphSourceConfig("online", TENANT, CLIENT, "from-the-environment")


def test_an_unset_environment_variable_names_key_and_variable(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("graph-secret-value", "${NO_SUCH_VARIABLE_SET}"))
    assert "config.yaml:7: sources.online.client_secret: environment variable NO_SUCH_VARIABLE_SET is not set" in found


def test_a_secret_may_come_from_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "graph.secret").write_text("from-a-file\n")
    config = load(tmp_path, BASE.replace("client_secret: graph-secret-value", "client_secret_file: graph.secret"))
    assert isinstance(config.sources["online"], GraphSourceConfig)
    assert config.sources["online"].client_secret == "from-a-file"


def test_a_secret_file_path_may_use_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "graph").write_text("from-credentials\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    text = BASE.replace("client_secret: graph-secret-value", "client_secret_file: ${CREDENTIALS_DIRECTORY}/graph")
    source = load(tmp_path, text).sources["online"]
    assert isinstance(source, GraphSourceConfig)
    assert source.client_secret == "from-credentials"


@pytest.mark.parametrize(
    ("under_systemd", "read_from"),
    [(False, "credstore"), (True, "credentials")],
    ids=["an admin's shell reads the credential store", "the service reads systemd's copy"],
)
def test_a_credential_path_falls_back_when_its_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: bool, read_from: str
) -> None:
    for folder in ("credstore", "credentials"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "presence-bridge.graph-secret").write_text(f"from-{folder}\n")
    if under_systemd:
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    else:
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    key = f"client_secret_file: ${{CREDENTIALS_DIRECTORY:-{tmp_path / 'credstore'}}}/presence-bridge.graph-secret"
    source = load(tmp_path, BASE.replace("client_secret: graph-secret-value", key)).sources["online"]
    assert isinstance(source, GraphSourceConfig)
    assert source.client_secret == f"from-{read_from}"


def test_an_unset_credentials_directory_says_how_to_give_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = BASE.replace("client_secret: graph-secret-value", "client_secret_file: ${CREDENTIALS_DIRECTORY}/graph")
    found = problems(tmp_path, text)
    assert "config.yaml:7: sources.online.client_secret_file: environment variable CREDENTIALS_DIRECTORY" in found
    assert "${CREDENTIALS_DIRECTORY:-PATH}" in found


def test_a_certificate_may_come_from_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "presence-bridge.graph-certificate").write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    key = "certificate_path: ${CREDENTIALS_DIRECTORY}/presence-bridge.graph-certificate"
    source = load(tmp_path, BASE.replace("client_secret: graph-secret-value", key)).sources["online"]
    assert isinstance(source, GraphSourceConfig)
    assert source.certificate_path == tmp_path / "presence-bridge.graph-certificate"


def test_under_systemd_the_default_database_is_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'state'}:{tmp_path / 'other'}")
    config = load(tmp_path, BASE)
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'presence-bridge.db'}"


def test_an_unreadable_secret_file_names_key_and_path(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("client_secret: graph-secret-value", "client_secret_file: nope.txt"))
    assert f"sources.online.client_secret_file: cannot read {tmp_path / 'nope.txt'}" in found


@pytest.mark.timeout(10)  # before the fix, reading the FIFO waited for a writer forever
def test_a_secret_file_that_is_a_fifo_is_refused_unread(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "graph.secret")
    found = problems(tmp_path, BASE.replace("client_secret: graph-secret-value", "client_secret_file: graph.secret"))
    assert f"client_secret_file: cannot read {tmp_path / 'graph.secret'}: not a regular file" in found


def test_a_secret_file_too_large_for_a_secret_is_refused_unread(tmp_path: Path) -> None:
    with (tmp_path / "graph.secret").open("wb") as file:
        file.truncate(1 << 30)  # sparse: a GiB of zeros that takes no disk, like /dev/zero it would fill memory
    found = problems(tmp_path, BASE.replace("client_secret: graph-secret-value", "client_secret_file: graph.secret"))
    assert "client_secret_file: cannot read" in found
    assert "larger than 65536 bytes, which no secret is" in found


@pytest.mark.timeout(10)
def test_a_file_under_a_key_that_holds_no_secret_is_never_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    found = problems(tmp_path, BASE + "extra_password_file: pipe\n")
    assert "config.yaml:11: extra_password_file: unknown key" in found
    assert "cannot read" not in found


def test_an_empty_secret_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    found = problems(tmp_path, BASE.replace("client_secret: graph-secret-value", "client_secret_file: empty"))
    assert f"sources.online.client_secret_file: {tmp_path / 'empty'} is empty" in found


def test_a_secret_and_its_file_together_are_a_problem(tmp_path: Path) -> None:
    (tmp_path / "graph.secret").write_text("x")
    text = BASE.replace("client_secret: graph-secret-value", "client_secret: a\n    client_secret_file: graph.secret")
    assert "sources.online.client_secret: give either client_secret or client_secret_file, not both" in problems(
        tmp_path, text
    )


def test_no_secret_appears_in_any_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WF_TOKEN", API_TOKEN)
    text = with_ews(
        "database_url: postgresql://bridge:db-password-value@db/bridge\n"
        + BASE
        + f"workforce:\n  url: https://wf.example.com/hooks\n  signing_secret: {SIGNING_SECRET}\n"
        + "api_tokens:\n  - {name: wf, token: '${WF_TOKEN}', scopes: [workforce]}\n"
    )
    shown = repr(load(tmp_path, text))
    for secret in ("graph-secret-value", "ews-password-value", "db-password-value", SIGNING_SECRET, API_TOKEN):
        assert secret not in shown


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("graph-secret-value", "123456789"))
    assert "sources.online.client_secret: <hidden> is not of type 'string'" in found
    assert "123456789" not in found


# --- schema problems -----------------------------------------------------------------------------------------


def test_a_tenant_id_must_be_a_uuid(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace(TENANT, "abc"))
    assert "config.yaml:5: sources.online.tenant_id: 'abc' is not a valid UUID" in found


def test_a_missing_key_is_named_at_its_parent(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace(f"    tenant_id: {TENANT}\n", ""))
    assert "config.yaml:3: sources.online: 'tenant_id' is a required property" in found


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("    kind: graph\n", "    kind: graph\n    tenant: x\n"))
    assert "config.yaml:5: sources.online.tenant: unknown key" in found


def test_an_unknown_source_kind_is_named(tmp_path: Path) -> None:
    assert "sources.online.kind: 'imap' is not one of ['graph', 'ews']" in problems(
        tmp_path, BASE.replace("kind: graph", "kind: imap")
    )


def test_sources_are_required(tmp_path: Path) -> None:
    assert "config.yaml:1: 'sources' is a required property" in problems(tmp_path, "public_url: https://b.example\n")


@pytest.mark.parametrize("concurrency", ["0", "5"])
def test_max_concurrency_is_one_to_four(tmp_path: Path, concurrency: str) -> None:
    text = BASE.replace("    kind: graph\n", f"    kind: graph\n    max_concurrency: {concurrency}\n")
    assert "sources.online.max_concurrency:" in problems(tmp_path, text)


def test_an_ews_auth_type_is_ntlm_or_basic(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    auth_type: kerberos\n    password: ews")
    assert "sources.onprem.auth_type: 'kerberos' is not one of ['ntlm', 'basic']" in problems(tmp_path, text)


def test_an_ews_version_is_a_known_one(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    version: Exchange2007\n    password: ews")
    assert "sources.onprem.version: 'Exchange2007' is not one of" in problems(tmp_path, text)


def test_an_ews_source_needs_a_password(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews-password-value\n", "")
    assert "sources.onprem: give password or password_file" in problems(tmp_path, text)


def test_a_workforce_id_must_be_quoted_text(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace('workforce_id: "E1001"', "workforce_id: 1001"))
    assert "mailboxes[0].workforce_id: 1001 is not of type 'string'" in found


@pytest.mark.parametrize("address", ["adele", "adele@contoso", "a b@contoso.com"])
def test_a_mailbox_address_must_look_like_one(tmp_path: Path, address: str) -> None:
    found = problems(tmp_path, BASE.replace("adele@contoso.com", f"'{address}'"))
    assert f"config.yaml:9: mailboxes[0].address: '{address}' is not an email address" in found


# --- cross-checks --------------------------------------------------------------------------------------------


def test_a_mailbox_naming_an_unknown_source_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace('workforce_id: "E1002"}', 'workforce_id: "E1002", source: onprem}'))
    assert "config.yaml:10: mailboxes[1].source: 'onprem' is not a source (defined: online)" in found


def test_a_mailbox_must_name_its_source_when_there_are_several(tmp_path: Path) -> None:
    text = with_ews().replace(", source: online}", "}")
    assert "mailboxes[0]: source is required when more than one source is defined" in problems(tmp_path, text)


def test_duplicate_addresses_are_found_whatever_their_case(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("alex@contoso.com", "Adele@Contoso.com"))
    assert "config.yaml:10: mailboxes[1].address: 'Adele@Contoso.com' is already listed at line 9" in found


def test_duplicate_workforce_ids_are_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace('"E1002"', '"E1001"'))
    assert "config.yaml:10: mailboxes[1].workforce_id: 'E1001' is already listed at line 9" in found


def test_public_url_is_required_with_a_graph_source(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("public_url: https://bridge.example.com\n", ""))
    assert "config.yaml:1: public_url: required: Graph must reach the bridge for source online" in found


def test_public_url_must_be_https(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("https://bridge.example.com", "http://bridge.example.com"))
    assert "public_url: http://bridge.example.com must use https://" in found


def test_plain_http_is_allowed_on_loopback_for_the_emulators(tmp_path: Path) -> None:
    text = BASE.replace("https://bridge.example.com", "http://127.0.0.1:8080")
    text = text.replace("    kind: graph\n", "    kind: graph\n    authority_host: http://localhost:9000\n")
    assert load(tmp_path, text).sources["online"].kind == "graph"


def test_a_graph_source_needs_a_credential(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE.replace("    client_secret: graph-secret-value\n", ""))
    assert "config.yaml:3: sources.online: give exactly one of client_secret" in found


def test_a_graph_source_takes_only_one_credential(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text("pem")
    text = BASE.replace("    client_secret: graph", "    certificate_path: app.pem\n    client_secret: graph")
    assert "sources.online: give exactly one of client_secret" in problems(tmp_path, text)


def test_a_certificate_is_enough_for_a_graph_source(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text("pem")
    text = BASE.replace("client_secret: graph-secret-value", "certificate_path: app.pem")
    assert load(tmp_path, text).sources["online"] == GraphSourceConfig(
        "online", TENANT, CLIENT, certificate_path=tmp_path / "app.pem"
    )


def test_a_missing_ca_file_is_a_problem(tmp_path: Path) -> None:
    text = BASE.replace("    kind: graph\n", "    kind: graph\n    ca_file: ca.pem\n")
    assert f"sources.online.ca_file: {tmp_path / 'ca.pem'} does not exist" in problems(tmp_path, text)


def test_a_missing_templates_file_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, "templates: nowhere.yaml\n" + BASE)
    assert "config.yaml:1: templates: cannot read" in found


def test_an_unsupported_database_url_is_a_problem(tmp_path: Path) -> None:
    assert "database_url: expected sqlite:///FILE or postgresql://" in problems(
        tmp_path, "database_url: mysql://db/bridge\n" + BASE
    )


def test_a_workforce_url_must_use_https_unless_on_loopback(tmp_path: Path) -> None:
    workforce = f"workforce:\n  url: http://wf.example.com/hooks\n  signing_secret: {SIGNING_SECRET}\n"
    assert "workforce.url: http://wf.example.com/hooks must use https://" in problems(tmp_path, BASE + workforce)
    config = load(tmp_path, BASE + workforce.replace("wf.example.com", "127.0.0.1:9000"))
    assert config.workforce.url == "http://127.0.0.1:9000/hooks"


def test_the_webhook_batch_size_is_read_and_bounded(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).workforce.batch_size == 100
    assert load(tmp_path, BASE + "workforce:\n  batch_size: 20\n").workforce.batch_size == 20
    assert "workforce.batch_size: 0 is less than the minimum of 1" in problems(
        tmp_path, BASE + "workforce:\n  batch_size: 0\n"
    )
    assert "workforce.batch_size: 1001 is greater than the maximum of 1000" in problems(
        tmp_path, BASE + "workforce:\n  batch_size: 1001\n"
    )


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("public_url", "https://admin:hunter2@bridge.example.com"),
        ("workforce.url", "https://svc:hunter2@wf.example.com/hooks"),
        ("sources.online.graph_url", "https://u:hunter2@graph.example.com/v1.0"),
    ],
)
def test_credentials_inside_a_url_are_refused_and_not_shown(tmp_path: Path, key: str, url: str) -> None:
    text = BASE
    if key == "public_url":
        text = text.replace("https://bridge.example.com", url)
    elif key == "workforce.url":
        text += f"workforce:\n  url: {url}\n  signing_secret: {SIGNING_SECRET}\n"
    else:
        text = text.replace(
            "    client_secret: graph-secret-value", f"    client_secret: graph-secret-value\n    graph_url: {url}"
        )
    found = problems(tmp_path, text)
    assert f"{key}: {url.replace('hunter2', '***')} must not carry credentials (user:password@)" in found
    assert "hunter2" not in found


def test_a_password_in_the_database_url_query_is_masked_when_shown(tmp_path: Path) -> None:
    url = "postgresql://bridge@db.example.com/bridge?sslmode=require&password=hunter2"
    config = load(tmp_path, BASE + f"database_url: '{url}'\n")
    assert config.database_url_shown == "postgresql://bridge@db.example.com/bridge?sslmode=require&password=***"


def test_a_workforce_url_needs_a_signing_secret(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "workforce:\n  url: https://wf.example.com/hooks\n")
    assert "workforce: signing_secret or signing_secret_file is required with url" in found


def test_a_signing_secret_must_be_a_standard_webhooks_secret(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "workforce:\n  url: https://wf.example.com/hooks\n  signing_secret: not-it\n")
    assert "workforce.signing_secret: is not a Standard Webhooks secret" in found
    assert "not-it" not in found


def test_the_signing_key_is_the_decoded_secret(tmp_path: Path) -> None:
    config = load(
        tmp_path, BASE + f"workforce:\n  url: https://wf.example.com/hooks\n  signing_secret: {SIGNING_SECRET}\n"
    )
    assert config.workforce.signing_key == bytes(range(32))


def test_the_listener_limits_and_tls_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("certificate")
    (tmp_path / "tls.key").write_text("key")
    listen = (
        "listen:\n  header_timeout: PT5S\n  body_timeout: PT1M\n  max_connections: 100\n"
        "  tls_cert_file: tls.crt\n  tls_key_file: tls.key\n"
    )
    config = load(tmp_path, BASE + listen)
    assert config.listen == ListenConfig(
        header_timeout=timedelta(seconds=5),
        body_timeout=timedelta(minutes=1),
        max_connections=100,
        tls_cert_file=tmp_path / "tls.crt",
        tls_key_file=tmp_path / "tls.key",
    )


def test_the_listener_defaults_bound_slow_clients(tmp_path: Path) -> None:
    listen = load(tmp_path, BASE).listen
    assert (listen.header_timeout, listen.body_timeout, listen.max_connections) == (
        timedelta(seconds=15),
        timedelta(seconds=30),
        512,
    )
    assert listen.tls_cert_file is None


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("  tls_cert_file: tls.crt\n", "listen: give tls_cert_file and tls_key_file together"),
        ("  tls_cert_file: a.crt\n  tls_key_file: a.key\n", "listen.tls_cert_file: "),
        ("  header_timeout: PT0S\n", "listen.header_timeout: must be between PT1S and PT10M"),
        ("  body_timeout: P99999999999D\n", "listen.body_timeout: P99999999999D is longer than P366D"),
        ("  max_connections: 0\n", "listen.max_connections: 0 is less than the minimum of 1"),
    ],
)
def test_listener_settings_out_of_range_are_problems(tmp_path: Path, listen: str, message: str) -> None:
    (tmp_path / "tls.crt").write_text("certificate")
    assert message in problems(tmp_path, BASE + "listen:\n" + listen)


def test_the_reconcile_interval_is_at_least_five_minutes(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "sync:\n  reconcile_interval: PT1M\n")
    assert "sync.reconcile_interval: must be at least PT5M" in found


def test_changes_are_kept_seven_days_unless_configured(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).workforce.retention == timedelta(days=7)
    assert load(tmp_path, BASE + "workforce: {retention: P30D}\n").workforce.retention == timedelta(days=30)


def test_a_retention_under_an_hour_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "workforce:\n  retention: PT5M\n")
    assert "workforce.retention: must be at least PT1H" in found


def test_a_reconcile_interval_too_long_to_reckon_with_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "sync:\n  reconcile_interval: P99999999999D\n")
    assert "config.yaml:12: sync.reconcile_interval: P99999999999D is longer than P366D" in found


def test_the_reconcile_interval_is_an_iso_duration(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "sync:\n  reconcile_interval: 6h\n")
    assert "sync.reconcile_interval: '6h' is not an ISO 8601 duration" in found


@pytest.mark.parametrize("share", ["0", "1.5"])
def test_the_mass_delete_share_is_above_zero_up_to_one(tmp_path: Path, share: str) -> None:
    assert "sync.mass_delete_share:" in problems(tmp_path, BASE + f"sync:\n  mass_delete_share: {share}\n")


def test_a_mass_delete_needs_both_the_share_and_the_minimum() -> None:
    sync = SyncConfig(mass_delete_share=0.5, mass_delete_min=5)
    assert sync.is_mass_delete(deleted=5, mirrored=10)
    assert not sync.is_mass_delete(deleted=4, mirrored=4)
    assert not sync.is_mass_delete(deleted=5, mirrored=11)


def test_by_default_only_emptying_a_calendar_is_a_mass_delete() -> None:
    assert SyncConfig().is_mass_delete(deleted=20, mirrored=20)
    assert not SyncConfig().is_mass_delete(deleted=19, mirrored=20)


def test_an_api_token_is_found_by_its_value(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + f"api_tokens:\n  - {{name: wf, token: {API_TOKEN}, scopes: [workforce, read]}}\n")
    assert config.api_token(API_TOKEN) == ApiToken("wf", API_TOKEN, frozenset({"workforce", "read"}))
    assert config.api_token("something-else-entirely") is None


def test_an_api_token_must_be_long_enough(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "api_tokens:\n  - {name: wf, token: short, scopes: [workforce]}\n")
    assert "api_tokens[0].token: is shorter than 16 characters" in found


def test_an_api_token_scope_must_be_known(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + f"api_tokens:\n  - {{name: wf, token: {API_TOKEN}, scopes: [everything]}}\n")
    assert "api_tokens[0].scopes[0]: 'everything' is not one of ['workforce', 'read', 'admin', 'metrics']" in found


def test_api_token_names_and_values_are_unique(tmp_path: Path) -> None:
    token = f"  - {{name: wf, token: {API_TOKEN}, scopes: [read]}}\n"
    tokens = "api_tokens:\n" + token + token
    found = problems(tmp_path, BASE + tokens)
    assert "config.yaml:13: api_tokens[1].name: 'wf' is already used at line 12" in found
    assert "config.yaml:13: api_tokens[1].token: is the same token as the one at line 12" in found


def test_every_problem_is_reported_in_one_error(tmp_path: Path) -> None:
    text = BASE.replace(TENANT, "abc").replace("alex@contoso.com", "adele@contoso.com")
    text = text.replace("public_url: https://bridge.example.com\n", "listen: {port: 99999}\n")
    with pytest.raises(UserError) as caught:
        load(tmp_path, text)
    assert caught.value.summary == f"configuration {tmp_path / 'config.yaml'} is not valid"
    found = caught.value.render()
    for key in ("listen.port", "sources.online.tenant_id", "public_url", "mailboxes[1].address"):
        assert key in found


# --- notify ----------------------------------------------------------------------------------------------------


def test_notify_takes_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "notify: {webhook_url: 'https://chat.example.com/hooks/T1'}\n")
    assert config.notify == NotifyConfig(webhook_url="https://chat.example.com/hooks/T1")
    assert (config.notify.interval, config.notify.unreachable_after) == (timedelta(minutes=1), timedelta(minutes=15))


def test_notify_without_anywhere_to_send_is_a_problem(tmp_path: Path) -> None:
    assert "notify: give mail_to, webhook_url or webhook_url_file" in problems(tmp_path, BASE + "notify: {}\n")


def test_notify_mail_without_a_mail_section_is_a_problem(tmp_path: Path) -> None:
    rendered = problems(tmp_path, BASE + "notify: {mail_to: [it@contoso.com]}\n")
    assert "notify.mail_to: needs a `mail:` section" in rendered


def test_a_plain_http_webhook_off_loopback_is_a_problem_that_does_not_quote_it(tmp_path: Path) -> None:
    rendered = problems(tmp_path, BASE + "notify: {webhook_url: 'http://chat.example.com/hooks/T0SECRET'}\n")
    assert "notify.webhook_url: must use https://" in rendered
    assert "T0SECRET" not in rendered


def test_the_webhook_url_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "chat").write_text("https://chat.example.com/hooks/T2\n")
    config = load(tmp_path, BASE + "notify: {webhook_url_file: chat, interval: PT30S}\n")
    assert config.notify is not None
    assert (config.notify.webhook_url, config.notify.interval) == (
        "https://chat.example.com/hooks/T2",
        timedelta(seconds=30),
    )


# --- fuzzing: any document is loaded or refused with problems, never an exception of another kind ---------------

FULL = (
    BASE
    + f"workforce:\n  url: https://wf.example.com/hooks\n  signing_secret: {SIGNING_SECRET}\n"
    + "sync: {reconcile_interval: PT6H, mass_delete_share: 0.5, mass_delete_min: 3}\n"
    + "listen: {host: 127.0.0.1, port: 0, header_timeout: PT5S, body_timeout: PT10S, max_connections: 10}\n"
    + f"api_tokens:\n  - {{name: wf, token: {API_TOKEN}, scopes: [workforce]}}\n"
    + "mail: {sender: adele@contoso.com}\n"
)


@pytest.mark.fuzz
@given(document=mutations(yaml.safe_load(FULL)))
@fuzz_settings(150)
def test_any_config_document_is_loaded_or_refused_with_problems(tmp_path: Path, document: object) -> None:
    loaded_or_refused(lambda: load_config(write(tmp_path, yaml.safe_dump(document))))


@pytest.mark.fuzz
@given(text=YAML_TEXT)
@fuzz_settings(150)
def test_any_config_text_is_loaded_or_refused_with_problems(tmp_path: Path, text: str) -> None:
    loaded_or_refused(lambda: load_config(write(tmp_path, text)))


def test_the_example_configs_on_premises_source_loads_and_names_every_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commented `onprem` block, uncommented, is a working EWS source that shows every key the schema has."""
    for name, value in (
        ("GRAPH_CLIENT_SECRET", "s"),
        ("EWS_PASSWORD", "p"),
        ("WF_API_TOKEN", API_TOKEN),
        ("CHAT_WEBHOOK_URL", "https://chat.example.com/hooks/T0123"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORKFORCE_SIGNING_SECRET", SIGNING_SECRET)
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    assert "later version" not in example
    lines, inside = [], False
    for line in example.splitlines():
        inside = line.startswith("  # onprem:") or (inside and line.startswith("  #"))
        if inside and not line.startswith("  #    "):
            line = "  " + line.removeprefix("  # ")
        lines.append(line.replace("/etc/presence-bridge/internal-ca.pem", str(tmp_path / "ca.pem")))
    (tmp_path / "ca.pem").write_text("not read by load_config")
    (tmp_path / "config.yaml").write_text("\n".join(lines).replace("source: online}", "source: onprem}"))
    config = load_config(tmp_path / "config.yaml")
    onprem = config.sources["onprem"]
    assert isinstance(onprem, EwsSourceConfig)
    assert (onprem.watch, onprem.streams, onprem.version) == ("streaming", 3, "Exchange2016")
    schema = json.loads((REPO / "bridge" / "config.schema.json").read_text())
    ews_keys = set(schema["$defs"]["ewsSource"]["properties"]) - {"kind", "password_file"}
    shown = {line.split(":")[0].strip() for line in lines if line.startswith("    ") and ":" in line}
    assert ews_keys <= shown


def test_a_source_may_have_its_own_log_level(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    log_level: DEBUG\n    password: ews")
    config = load_config(write(tmp_path, text))
    assert config.source_log_levels == {"onprem": "DEBUG"}


def test_a_source_log_level_must_be_a_level(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    log_level: LOUD\n    password: ews")
    assert "sources.onprem.log_level: 'LOUD' is not one of ['DEBUG', 'INFO', 'WARNING', 'ERROR']" in problems(
        tmp_path, text
    )


def test_a_source_s_time_zone_may_be_a_windows_id_and_is_kept_as_its_iana_name(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    time_zone: W. Europe Standard Time\n    password: ews")
    config = load_config(write(tmp_path, text))
    assert config.source_time_zones["onprem"] == "Europe/Berlin"
    assert set(config.source_time_zones.values()) == {"Europe/Berlin", "UTC"}  # the Graph source: the default


def test_a_source_s_time_zone_must_name_a_zone(tmp_path: Path) -> None:
    text = with_ews().replace("    password: ews", "    time_zone: Mars/Olympus_Mons\n    password: ews")
    assert "sources.onprem.time_zone: 'Mars/Olympus_Mons' is neither an IANA zone nor a Windows zone id" in problems(
        tmp_path, text
    )


def test_the_configured_secrets_are_listed_for_the_logs_to_redact(tmp_path: Path) -> None:
    text = with_ews() + f"api_tokens:\n  - {{name: wf, token: {API_TOKEN}, scopes: [workforce]}}\n"
    config = load_config(write(tmp_path, text))
    secrets = config.secrets()
    assert API_TOKEN in secrets
    assert "ews-password-value" in secrets


GROUP_ID = "0B5C3F9E-6D1A-4E8B-9C2D-7A4F1E3B5D60"


def with_group(group: str) -> str:
    return BASE.replace(
        "    client_secret: graph-secret-value", f"    client_secret: graph-secret-value\n    group: {group}"
    )


def test_a_graph_source_may_follow_a_group_by_its_id(tmp_path: Path) -> None:
    config = load(tmp_path, with_group(f"{{id: {GROUP_ID}, workforce_id: mail, refresh: PT5M}}"))

    online = config.sources["online"]
    assert isinstance(online, GraphSourceConfig)
    assert online.group == GroupConfig(GROUP_ID.lower(), "mail", timedelta(minutes=5))


def test_a_groups_defaults_are_employee_id_and_a_quarter_hour(tmp_path: Path) -> None:
    online = load(tmp_path, with_group(f"{{id: {GROUP_ID}}}")).sources["online"]

    assert isinstance(online, GraphSourceConfig)
    assert online.group == GroupConfig(GROUP_ID.lower(), "employeeId", timedelta(minutes=15))


def test_a_group_named_otherwise_than_by_its_id_or_refreshed_too_often_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, with_group("{id: Sales Team, workforce_id: badge, refresh: PT30S}"))

    assert "sources.online.group.id: 'Sales Team' is not a valid UUID" in found
    assert "sources.online.group.workforce_id: 'badge' is not one of" in found
    assert "sources.online.group.refresh: must be at least PT1M" in found
