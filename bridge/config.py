"""The bridge's configuration file: checked as a whole, so that nothing starts on a half-valid config.

Every problem (schema, secrets, references between sections, the template mapping) is collected into one
`UserError` naming the key and its line. Secrets come literally, from `${ENV_VAR}` or from a sibling
`<key>_file`, and are kept out of every repr so that logging a config cannot leak them (docs/configuration.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from bridge.errors import UserError
from bridge.redact import url_shown
from bridge.yamlfile import (
    DurationTooLong,
    YamlDocument,
    as_dict,
    as_list,
    format_duration,
    load_schema,
    load_yaml,
    parse_duration,
    schema_problems,
)
from bridge.zones import iana_zone

SCHEMA = Path(__file__).with_name("config.schema.json")
DEFAULT_DATABASE_URL = "sqlite:///presence-bridge.db"  # beside the config file, or in systemd's StateDirectory=
# A chat webhook URL carries its own credential (Slack, Teams and Mattermost put a token in the path).
SECRET_KEY = re.compile(r"(?:.+_)?(?:secret|password|token)|database_url|webhook_url")
# Where the schema has secrets (a source's or a token's name or index stands as *): only these read `*_file`.
_SECRETS = {
    ("database_url",),
    ("sources", "*", "client_secret"),
    ("sources", "*", "password"),
    ("workforce", "signing_secret"),
    ("api_tokens", "*", "token"),
    ("notify", "webhook_url"),
}
_MAX_SECRET_FILE = 64 * 1024
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# In paths, ${VAR:-fallback} as in the shell: ${CREDENTIALS_DIRECTORY:-/etc/credstore} reads the credential systemd
# passed to the service, and the same file from the credential store in an administrator's shell.
_PATH_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SQLITE_FILE = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(.*)")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_MIN_RECONCILE = timedelta(minutes=5)
_MIN_RETENTION = timedelta(hours=1)
_MIN_GROUP_REFRESH = timedelta(minutes=1)  # each refresh reads the whole membership
_MAX_TIMEOUT = timedelta(minutes=10)
_MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """The HTTP listener, and the limits that keep slow or too many clients from starving it (docs/configuration.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    header_timeout: timedelta = timedelta(seconds=15)
    body_timeout: timedelta = timedelta(seconds=30)
    max_connections: int = 512
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """An Entra ID group whose members the source enrols (bridge/group_roster.py, docs/running.md)."""

    id: str
    workforce_id: str = "employeeId"  # one of domain.MEMBER_ATTRIBUTES
    refresh: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class GraphSourceConfig:
    """An Exchange Online tenant reached through Microsoft Graph; `client_secret` or `certificate_path` is set."""

    name: str
    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: Path | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: Path | None = None
    max_concurrency: int = 4
    log_level: str | None = None  # None: the bridge's own level
    group: GroupConfig | None = None
    # IANA zone for mailboxes whose settings name none (or cannot be read); a Windows id in the file is mapped.
    time_zone: str = "UTC"
    kind: Literal["graph"] = "graph"


@dataclass(frozen=True, slots=True)
class EwsSourceConfig:
    """An Exchange server on-premises reached through EWS (bridge/sources/ews.py, docs/ews-source.md).

    `version` is the API version the server speaks; it is fixed so that nothing is probed. None means Exchange2016
    (build 15.1.2507.6), which Exchange 2016 and 2019 both answer.
    """

    name: str
    service_endpoint: str
    username: str
    password: str = field(repr=False)
    auth_type: Literal["ntlm", "basic"] = "ntlm"
    version: str | None = None  # None: Exchange2016, see above
    impersonation: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    watch: Literal["streaming", "pull"] = "streaming"
    # With delegate access: the server's HangingConnectionLimit for the service account (3 by default on-premises).
    streams: int = 3
    # Requests under way at once through the service account, streams aside: below the throttling policy's
    # EWSMaxConcurrency (27 by default per budget), which every instance's requests share (docs/ews-source.md).
    max_concurrency: int = 8
    log_level: str | None = None  # None: the bridge's own level
    # IANA zone of the server's mailboxes (EWS exposes no documented per-mailbox zone; docs/ews-source.md).
    time_zone: str = "UTC"
    kind: Literal["ews"] = "ews"


SourceConfig = GraphSourceConfig | EwsSourceConfig


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    address: str
    workforce_id: str
    source: str


@dataclass(frozen=True, slots=True)
class WorkforceConfig:
    url: str | None = None
    signing_secret: str | None = field(default=None, repr=False)
    # How long a change stays after delivery (without a webhook: after it was made) before it is pruned.
    retention: timedelta = timedelta(days=7)
    # Changes per webhook request, at most: a first sync sends a mailbox's every shown appointment at once.
    batch_size: int = 100

    @property
    def signing_key(self) -> bytes | None:
        """The HMAC key: the base64 part of a Standard Webhooks `whsec_` secret, decoded."""
        if self.signing_secret is None:
            return None
        return base64.b64decode(self.signing_secret.removeprefix("whsec_"))


@dataclass(frozen=True, slots=True)
class MailConfig:
    """Who mail sent through `POST /api/v1/mail` comes from, and which source sends it."""

    sender: str
    source: str


@dataclass(frozen=True, slots=True)
class SyncConfig:
    reconcile_interval: timedelta = timedelta(hours=6)
    mass_delete_share: float = 1.0
    mass_delete_min: int = 5
    # Mailboxes synced at once, all sources together (docs/sync.md, "How many at once", has the measurement).
    concurrency: int = 8

    def is_mass_delete(self, deleted: int, mirrored: int) -> bool:
        """Whether one delta deleting `deleted` of a mailbox's `mirrored` appointments should pause the mailbox.

        The default (share 1.0, at least 5) catches a calendar that suddenly reads as empty (lost permissions,
        a migrated mailbox) without getting in the way of people clearing a few appointments.
        """
        return deleted >= self.mass_delete_min and deleted >= self.mass_delete_share * mirrored


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Where notices to the administrator go (bridge/notices.py): mail recipients, a chat webhook, or both."""

    mail_to: tuple[str, ...] = ()
    webhook_url: str | None = field(default=None, repr=False)
    interval: timedelta = timedelta(minutes=1)
    unreachable_after: timedelta = timedelta(minutes=15)
    workforce_failing_after: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AdminPageConfig:
    session_idle_timeout: timedelta = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    token: str = field(repr=False)
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    database_url: str = field(repr=False)  # it may carry a password
    listen: ListenConfig
    public_url: str | None
    templates: Path | None  # None: the shipped default mapping
    sources: Mapping[str, SourceConfig]
    mailboxes: tuple[MailboxConfig, ...]
    workforce: WorkforceConfig
    sync: SyncConfig
    api_tokens: tuple[ApiToken, ...]
    mail: MailConfig | None = None  # None: the mail route answers 503
    notify: NotifyConfig | None = None  # None: problems are logged only
    admin_page: AdminPageConfig = AdminPageConfig()

    @property
    def graph_notification_url(self) -> str | None:
        return None if self.public_url is None else f"{self.public_url}/hooks/graph"

    @property
    def graph_lifecycle_url(self) -> str | None:
        return None if self.public_url is None else f"{self.public_url}/hooks/graph/lifecycle"

    @property
    def database_url_shown(self) -> str:
        """`database_url` with any password replaced, for logs and `check`."""
        return url_shown(self.database_url)

    @property
    def source_log_levels(self) -> dict[str, str]:
        return {name: source.log_level for name, source in self.sources.items() if source.log_level is not None}

    @property
    def source_time_zones(self) -> dict[str, str]:
        return {name: source.time_zone for name, source in self.sources.items()}

    @property
    def source_groups(self) -> dict[str, GroupConfig]:
        """The Entra ID group each source that follows one enrols (only Graph sources may)."""
        return {
            name: source.group
            for name, source in self.sources.items()
            if isinstance(source, GraphSourceConfig) and source.group is not None
        }

    def secrets(self) -> list[str]:
        """Every secret value the file gave, for the logs to redact wherever one would appear."""
        found = [token.token for token in self.api_tokens]
        found += [self.workforce.signing_secret or "", _url_password(self.database_url)]
        for source in self.sources.values():
            found.append(source.client_secret or "" if isinstance(source, GraphSourceConfig) else source.password)
        if self.workforce.signing_secret:
            found.append(self.workforce.signing_secret.removeprefix("whsec_"))
        if self.notify is not None and self.notify.webhook_url:
            found.append(self.notify.webhook_url)  # a chat incoming-webhook URL is its own credential
        return [secret for secret in found if secret]

    def mailboxes_for(self, source: str) -> tuple[MailboxConfig, ...]:
        return tuple(mailbox for mailbox in self.mailboxes if mailbox.source == source)

    def mailbox(self, address: str) -> MailboxConfig | None:
        """The configured mailbox with this address (Exchange addresses are case-insensitive)."""
        return next((m for m in self.mailboxes if m.address.casefold() == address.casefold()), None)

    def api_token(self, presented: str) -> ApiToken | None:
        """The token a request presented, compared in constant time so timing reveals nothing about others."""
        # A header aiohttp could not decode as UTF-8 arrives with surrogate escapes; it matches no token either.
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for token in self.api_tokens:
            if hmac.compare_digest(token.token.encode(), given):
                found = token
        return found


def load_config(path: Path | str) -> Config:
    """Read and check the configuration; raise one `UserError` listing every problem."""
    path = Path(path)
    doc = load_yaml(path)
    problems = schema_problems(doc, load_schema(SCHEMA), hide=SECRET_KEY)
    secrets = _resolve_secrets(doc, path.parent, problems)
    problems += _cross_problems(doc, secrets, path.parent)
    if problems:
        raise UserError(f"configuration {path} is not valid", problems)
    return _build(doc.data, secrets, path)


def _resolve_secrets(doc: YamlDocument, base: Path, problems: list[str]) -> dict[tuple[str | int, ...], str]:
    """Every secret's value by its path (`("sources", "online", "client_secret")`), wherever it was given."""
    found: dict[tuple[str | int, ...], str] = {}

    def walk(node: Any, at: tuple[str | int, ...]) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, (*at, index))
        for key, value in as_dict(node).items():
            walk(value, (*at, key))
            name = key.removesuffix("_file") if isinstance(key, str) else ""
            if not _is_secret((*at, name)) or not isinstance(value, str) or (name != key and name in node):
                continue  # not a secret, a type the schema reports, or both spellings (reported at the plain key)
            if name == key and f"{key}_file" in node:
                problems.append(doc.problem([*at, key], f"give either {key} or {key}_file, not both"))
                continue
            try:
                found[(*at, name)] = _from_env(value) if name == key else _from_file(value, base)
            except ValueError as exc:
                problems.append(doc.problem([*at, key], str(exc)))

    walk(doc.data, ())
    return found


def _is_secret(path: tuple[str | int, ...]) -> bool:
    """Whether `path` is where the schema puts a secret; a `*_file` anywhere else is an unknown key, never read."""
    shape = tuple("*" if index == 1 and len(path) == 3 else step for index, step in enumerate(path))
    return shape in _SECRETS


def _from_env(value: str) -> str:
    match = _ENV_REF.fullmatch(value)
    if match is None:
        return value
    secret = os.environ.get(match[1], "")
    if not secret:
        raise ValueError(f"environment variable {match[1]} is not set or empty")
    return secret


def _from_file(value: str, base: Path) -> str:
    path = _resolve(base, value)
    try:
        # Not a FIFO (reading would wait for a writer) nor a device (/dev/zero never ends).
        if not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"cannot read {path}: not a regular file")
        with path.open("rb") as file:
            raw = file.read(_MAX_SECRET_FILE + 1)
        if len(raw) > _MAX_SECRET_FILE:
            raise ValueError(f"cannot read {path}: larger than {_MAX_SECRET_FILE} bytes, which no secret is")
        secret = raw.decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: not UTF-8 text") from None
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


def _expand(value: str) -> str:
    """`value` with each ${VAR} or ${VAR:-fallback} replaced; a ValueError names a variable without either."""

    def variable(match: re.Match[str]) -> str:
        found = os.environ.get(match[1]) or match[2]
        if found is None:
            name = match[1]
            raise ValueError(f"environment variable {name} is not set (to read another path then: ${{{name}:-PATH}})")
        return found

    return _PATH_REF.sub(variable, value)


def _resolve(base: Path, value: str) -> Path:
    """A path from the config, variables expanded; relative ones are relative to the config file's folder."""
    return base / Path(_expand(value)).expanduser()


def _cross_problems(doc: YamlDocument, secrets: dict[tuple[str | int, ...], str], base: Path) -> list[str]:
    # Runs alongside the schema on data the schema may have rejected, so that one run reports everything.
    data = as_dict(doc.data)
    sources = as_dict(data.get("sources"))
    problems: list[str] = []
    database_url = secrets.get(("database_url",), DEFAULT_DATABASE_URL)
    if not re.match(r"(sqlite|postgresql|postgres)(\+\w+)?://", database_url):
        problems.append(doc.problem(["database_url"], "expected sqlite:///FILE or postgresql://USER@HOST/DATABASE"))
    problems += _url_problems(doc, ["public_url"], data.get("public_url"))
    for name, source in sources.items():
        problems += _source_problems(doc, ["sources", name], as_dict(source), base)
    graph = [name for name, source in sources.items() if as_dict(source).get("kind") == "graph"]
    if graph and "public_url" not in data:
        problems.append(doc.problem(["public_url"], f"required: Graph must reach the bridge for source {graph[0]}"))
    problems += _mailbox_problems(doc, data, sources)
    problems += _workforce_problems(doc, as_dict(data.get("workforce")), secrets)
    mail_source = as_dict(data.get("mail")).get("source")
    if mail_source is not None and mail_source not in sources:
        problems.append(doc.problem(["mail", "source"], f"names no source in sources: {mail_source!r}"))
    elif "mail" in data and mail_source is None and len(sources) > 1:
        problems.append(doc.problem(["mail"], "give source: there are several sources to send through"))
    problems += _api_token_problems(doc, as_list(data.get("api_tokens")), secrets)
    problems += _notify_problems(doc, data, secrets)
    for section, key, minimum, why in (
        ("sync", "reconcile_interval", _MIN_RECONCILE, "each reconcile reads every calendar again"),
        ("workforce", "retention", _MIN_RETENTION, "a feed reader further behind must start again from the state"),
    ):
        problems += _at_least(doc, [section, key], as_dict(data.get(section)).get(key), minimum, why)
    problems += _listen_problems(doc, as_dict(data.get("listen")), base)
    templates = data.get("templates")
    # The mapping's own content is checked where it is loaded (templates.load_mapping): config sits below it.
    path = _checked_path(doc, ["templates"], templates, base, problems)
    if path is not None and not path.is_file():
        problems.append(doc.problem(["templates"], f"cannot read {path}: no such file"))
    return problems


def _checked_path(doc: YamlDocument, at: list[str | int], value: Any, base: Path, problems: list[str]) -> Path | None:
    """The path a key names, or None when it is absent, of a type the schema reports, or names an unset variable."""
    if not isinstance(value, str):
        return None
    try:
        return _resolve(base, value)
    except ValueError as exc:
        problems.append(doc.problem(at, str(exc)))
        return None


def _listen_problems(doc: YamlDocument, spec: dict[str, Any], base: Path) -> list[str]:
    problems: list[str] = []
    given = [key for key in ("tls_cert_file", "tls_key_file") if key in spec]
    if len(given) == 1:
        problems.append(doc.problem(["listen"], "give tls_cert_file and tls_key_file together"))
    for tls_file in given:
        path = _checked_path(doc, ["listen", tls_file], spec[tls_file], base, problems)
        if path is not None and not path.is_file():
            problems.append(doc.problem(["listen", tls_file], f"{path} does not exist"))
    for key in ("header_timeout", "body_timeout"):
        try:
            timeout = parse_duration(spec[key]) if isinstance(spec.get(key), str) else None
        except DurationTooLong as exc:
            problems.append(doc.problem(["listen", key], str(exc)))
        except ValueError:
            pass  # the schema reports it
        else:
            if timeout is not None and not timedelta(seconds=1) <= timeout <= _MAX_TIMEOUT:
                problems.append(doc.problem(["listen", key], "must be between PT1S and PT10M"))
    return problems


def _at_least(doc: YamlDocument, at: list[str | int], value: Any, minimum: timedelta, why: str) -> list[str]:
    try:
        duration = parse_duration(value) if isinstance(value, str) else None
    except DurationTooLong as exc:
        return [doc.problem(at, str(exc))]
    except ValueError:
        return []  # the schema reports it
    if duration is not None and duration < minimum:
        return [doc.problem(at, f"must be at least {format_duration(minimum)} ({why})")]
    return []


def _time_zone(spec: dict[str, Any]) -> str:
    """The source's default zone as an IANA name (the file may give a Windows id; a bad one is reported)."""
    given = spec.get("time_zone")
    return (iana_zone(given) if isinstance(given, str) else None) or "UTC"


def _source_problems(doc: YamlDocument, at: list[str | int], spec: dict[str, Any], base: Path) -> list[str]:
    problems: list[str] = []
    zone = spec.get("time_zone")
    if isinstance(zone, str) and iana_zone(zone) is None:
        problems.append(doc.problem([*at, "time_zone"], f"{zone!r} is neither an IANA zone nor a Windows zone id"))
    for key in ("ca_file", "certificate_path"):
        path = _checked_path(doc, [*at, key], spec.get(key), base, problems)
        if path is not None and not path.is_file():
            problems.append(doc.problem([*at, key], f"{path} does not exist"))
    if spec.get("kind") == "graph":
        for key in ("authority_host", "graph_url"):
            problems += _url_problems(doc, [*at, key], spec.get(key))
        refresh = as_dict(spec.get("group")).get("refresh")
        try:
            every = parse_duration(refresh) if isinstance(refresh, str) else None
        except DurationTooLong as exc:
            problems.append(doc.problem([*at, "group", "refresh"], str(exc)))
            every = None
        except ValueError:
            every = None  # the schema reports it
        if every is not None and every < _MIN_GROUP_REFRESH:
            problems.append(doc.problem([*at, "group", "refresh"], "must be at least PT1M"))
        if len([key for key in ("client_secret", "certificate_path") if key in spec or f"{key}_file" in spec]) != 1:
            message = "give exactly one of client_secret, client_secret_file or certificate_path"
            problems.append(doc.problem(at, message))
    elif spec.get("kind") == "ews":
        problems += _url_problems(doc, [*at, "service_endpoint"], spec.get("service_endpoint"))
        if not spec.keys() & {"password", "password_file"}:
            problems.append(doc.problem(at, "give password or password_file"))
    return problems


def _url_problems(doc: YamlDocument, at: list[str | int], value: Any) -> list[str]:
    # Credentials and calendar contents cross these connections; plain http is for the emulators on loopback.
    if not isinstance(value, str):
        return []
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        return [doc.problem(at, "is not a URL")]
    if parts.username is not None or parts.password is not None:
        # Shown in logs and `check` output, a URL is no place for a secret; each secret has a key of its own.
        return [doc.problem(at, f"{url_shown(value)} must not carry credentials (user:password@)")]
    if value.startswith("http://") and hostname not in _LOOPBACK:
        return [doc.problem(at, f"{value} must use https:// (http:// only for a loopback host)")]
    return []


def _given_as(spec: dict[str, Any], key: str) -> str:
    """Which spelling of secret `key` the admin used, so a problem points at the line they wrote."""
    return f"{key}_file" if f"{key}_file" in spec else key


def _mailbox_problems(doc: YamlDocument, data: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    first: dict[tuple[str, str], int] = {}
    for index, mailbox in enumerate(as_list(data.get("mailboxes"))):
        spec = as_dict(mailbox)
        source = spec.get("source")
        if source is None and len(sources) > 1:
            problems.append(
                doc.problem(["mailboxes", index], "source is required when more than one source is defined")
            )
        elif isinstance(source, str) and sources and source not in sources:
            known = ", ".join(sources)
            problems.append(
                doc.problem(["mailboxes", index, "source"], f"{source!r} is not a source (defined: {known})")
            )
        # Exchange addresses are case-insensitive; workforce ids are the workforce system's, taken as they are.
        for key, value in (("address", spec.get("address")), ("workforce_id", spec.get("workforce_id"))):
            if not isinstance(value, str):
                continue
            seen = first.setdefault((key, value.casefold() if key == "address" else value), index)
            if seen != index:
                line = doc.line(["mailboxes", seen, key])
                problems.append(doc.problem(["mailboxes", index, key], f"{value!r} is already listed at line {line}"))
    return problems


def _workforce_problems(
    doc: YamlDocument, spec: dict[str, Any], secrets: dict[tuple[str | int, ...], str]
) -> list[str]:
    problems = _url_problems(doc, ["workforce", "url"], spec.get("url"))
    if "url" in spec and not spec.keys() & {"signing_secret", "signing_secret_file"}:
        message = "signing_secret or signing_secret_file is required with url (the workforce system checks signatures)"
        problems.append(doc.problem(["workforce"], message))
    secret = secrets.get(("workforce", "signing_secret"))
    if secret is not None and not _is_signing_secret(secret):
        message = "is not a Standard Webhooks secret: whsec_ followed by the base64 of 24 to 64 random bytes"
        problems.append(doc.problem(["workforce", _given_as(spec, "signing_secret")], message))
    return problems


def _notify_problems(doc: YamlDocument, data: dict[str, Any], secrets: dict[tuple[str | int, ...], str]) -> list[str]:
    if "notify" not in data:
        return []
    spec = as_dict(data["notify"])
    problems: list[str] = []
    if not spec.keys() & {"mail_to", "webhook_url", "webhook_url_file"}:
        problems.append(doc.problem(["notify"], "give mail_to, webhook_url or webhook_url_file: where notices go"))
    if "mail_to" in spec and "mail" not in data:
        message = "needs a `mail:` section: notices are mailed through its sender and source"
        problems.append(doc.problem(["notify", "mail_to"], message))
    url = secrets.get(("notify", "webhook_url"))
    at: list[str | int] = ["notify", _given_as(spec, "webhook_url")]
    # The URL is a secret: the problems describe it without quoting it.
    if url is not None and not re.fullmatch(r"https?://[^\s/?#]+\S*", url):
        problems.append(doc.problem(at, "is not an http:// or https:// URL"))
    elif url is not None and url.startswith("http://") and urlsplit(url).hostname not in _LOOPBACK:
        problems.append(doc.problem(at, "must use https:// (http:// only for a loopback host)"))
    return problems


def _is_signing_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64


def _api_token_problems(doc: YamlDocument, tokens: list[Any], secrets: dict[tuple[str | int, ...], str]) -> list[str]:
    problems: list[str] = []
    names: dict[str, int] = {}
    values: dict[str, int] = {}
    for index, item in enumerate(tokens):
        spec = as_dict(item)
        name, token = spec.get("name"), secrets.get(("api_tokens", index, "token"))
        at: list[str | int] = ["api_tokens", index, _given_as(spec, "token")]
        if not spec.keys() & {"token", "token_file"}:
            problems.append(doc.problem(["api_tokens", index], "give token or token_file"))
        if isinstance(name, str) and names.setdefault(name, index) != index:
            line = doc.line(["api_tokens", names[name], "name"])
            problems.append(doc.problem(["api_tokens", index, "name"], f"{name!r} is already used at line {line}"))
        if token is not None and len(token) < _MIN_TOKEN_LENGTH:
            problems.append(doc.problem(at, f"is shorter than {_MIN_TOKEN_LENGTH} characters: too easy to guess"))
        elif token is not None and values.setdefault(token, index) != index:
            line = doc.line(["api_tokens", values[token]])
            problems.append(doc.problem(at, f"is the same token as the one at line {line}: each client needs its own"))
    return problems


def _build(data: dict[str, Any], secrets: dict[tuple[str | int, ...], str], path: Path) -> Config:
    base = path.parent

    def file(value: str | None) -> Path | None:
        return None if value is None else _resolve(base, value)

    sources: dict[str, SourceConfig] = {}
    for name, spec in data["sources"].items():
        if spec["kind"] == "graph":
            sources[name] = GraphSourceConfig(
                name=name,
                client_secret=secrets.get(("sources", name, "client_secret")),
                certificate_path=file(spec.get("certificate_path")),
                ca_file=file(spec.get("ca_file")),
                **_urls(spec, "authority_host", "graph_url"),
                group=_group(spec["group"]) if "group" in spec else None,
                **_plain(spec, "tenant_id", "client_id", "max_concurrency", "log_level"),
                time_zone=_time_zone(spec),
            )
        else:
            sources[name] = EwsSourceConfig(
                name=name,
                password=secrets[("sources", name, "password")],
                ca_file=file(spec.get("ca_file")),
                **_urls(spec, "service_endpoint"),
                time_zone=_time_zone(spec),
                **_plain(
                    spec,
                    *(
                        "username",
                        "auth_type",
                        "version",
                        "impersonation",
                        "verify_tls",
                        "watch",
                        "streams",
                        "max_concurrency",
                        "log_level",
                    ),
                ),
            )
    only_source = next(iter(sources)) if len(sources) == 1 else ""
    sync = as_dict(data.get("sync"))
    if "reconcile_interval" in sync:
        sync = {**sync, "reconcile_interval": parse_duration(sync["reconcile_interval"])}
    workforce = as_dict(data.get("workforce"))
    if "retention" in workforce:
        workforce = {**workforce, "retention": parse_duration(workforce["retention"])}
    mail = as_dict(data.get("mail"))
    return Config(
        path=path.resolve(),
        database_url=_database_url(secrets.get(("database_url",), DEFAULT_DATABASE_URL), _state_folder(base)),
        listen=_listen(as_dict(data.get("listen")), file),
        public_url=_urls(data, "public_url").get("public_url"),
        templates=file(data.get("templates")),
        sources=MappingProxyType(sources),
        mailboxes=tuple(
            MailboxConfig(m["address"], m["workforce_id"], m.get("source", only_source))
            for m in data.get("mailboxes", [])
        ),
        workforce=WorkforceConfig(
            url=workforce.get("url"),
            signing_secret=secrets.get(("workforce", "signing_secret")),
            **_plain(workforce, "retention", "batch_size"),
        ),
        sync=SyncConfig(**_plain(sync, "reconcile_interval", "mass_delete_share", "mass_delete_min", "concurrency")),
        api_tokens=tuple(
            ApiToken(name=t["name"], token=secrets[("api_tokens", index, "token")], scopes=frozenset(t["scopes"]))
            for index, t in enumerate(data.get("api_tokens", []))
        ),
        mail=MailConfig(mail["sender"], mail.get("source", only_source)) if mail else None,
        notify=_notify(as_dict(data["notify"]), secrets) if "notify" in data else None,
        admin_page=_admin_page(as_dict(data.get("admin_page"))),
    )


def _group(spec: dict[str, Any]) -> GroupConfig:
    group = GroupConfig(id=spec["id"].lower(), **_plain(spec, "workforce_id"))
    return replace(group, refresh=parse_duration(spec["refresh"])) if "refresh" in spec else group


def _notify(spec: dict[str, Any], secrets: dict[tuple[str | int, ...], str]) -> NotifyConfig:
    durations = {
        key: parse_duration(spec[key])
        for key in ("interval", "unreachable_after", "workforce_failing_after")
        if key in spec
    }
    return NotifyConfig(
        mail_to=tuple(spec.get("mail_to", ())), webhook_url=secrets.get(("notify", "webhook_url")), **durations
    )


def _admin_page(spec: dict[str, Any]) -> AdminPageConfig:
    if "session_idle_timeout" not in spec:
        return AdminPageConfig()
    return AdminPageConfig(session_idle_timeout=parse_duration(spec["session_idle_timeout"]))


def _listen(spec: dict[str, Any], file: Callable[[str | None], Path | None]) -> ListenConfig:
    timeouts: dict[str, Any] = {
        key: parse_duration(spec[key]) for key in ("header_timeout", "body_timeout") if key in spec
    }
    return ListenConfig(
        tls_cert_file=file(spec.get("tls_cert_file")),
        tls_key_file=file(spec.get("tls_key_file")),
        **timeouts,
        **_plain(spec, "host", "port", "max_connections"),
    )


def _plain(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The keys the admin gave; the rest take the dataclass's default, so each default is written once."""
    return {key: spec[key] for key in keys if key in spec}


def _urls(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    # Paths are appended to these (`/hooks/graph`, `/users/...`): a trailing slash would double up.
    return {key: spec[key].rstrip("/") for key in keys if key in spec}


def _state_folder(config_folder: Path) -> Path:
    """Where a relative SQLite file lives: the service's state directory under systemd (StateDirectory= sets
    STATE_DIRECTORY; /etc, where the config is, is read-only to the service), else beside the config file."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else config_folder


def _url_password(url: str) -> str:
    match = re.search(r"://[^:/@]*:([^@]*)@", url)
    return match[1] if match else ""


def _database_url(url: str, base: Path) -> str:
    """A relative SQLite file is taken relative to `base`, like every other path in the config."""
    match = _SQLITE_FILE.fullmatch(url)
    if match is None or match[2].startswith("/") or match[2] in ("", ":memory:"):
        return url
    return f"{match[1]}{(base / match[2]).resolve()}{match[3]}"
