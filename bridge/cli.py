"""The `presence-bridge` command line (also `python -m bridge`).

Exit codes (docs/running.md): 0 done, 1 something to fix (the problems go to stderr, without a traceback), 2 a
usage error or a command this version does not have yet, 3 (`check`) something could not be reached but nothing
is known to be wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import __version__, logs
from bridge.config import Config, EwsSourceConfig, GroupConfig, load_config
from bridge.domain import MAIL_ADDRESS, FreeBusy
from bridge.errors import UserError
from bridge.templates import END_OF_DAY, SHOWABLE, TemplateMapping, TemplateRule, default_mapping_path, load_mapping
from bridge.yamlfile import format_duration

if TYPE_CHECKING:
    from sqlmodel import Session

    from bridge.preflight import Finding
    from bridge.roster import RosterPlan, RosterRow
    from bridge.store.db import Database

CONFIG_ENV = "PRESENCE_BRIDGE_CONFIG"
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVEL_HELP = "default: INFO for run and demo, WARNING for the others (their output is the answer)"
CONFIGURATION = 1
UNREACHABLE = 3

Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.getLevelName((args.log_level or args.default_log_level).upper())
    logs.configure(level, json_lines=args.log_format == "json")
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as exc:
        print(exc.render(), file=sys.stderr)
        return CONFIGURATION


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="presence-bridge", description="Keeps a workforce system in step with people's Exchange calendars."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help=LOG_LEVEL_HELP)
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines, or one JSON object a line (time, level, logger, message, source, mailbox)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _command(commands, "run", _run, "run the bridge", config=True).set_defaults(default_log_level="INFO")
    demo = "run the bridge against the embedded Exchange and workforce emulators"
    demo_command = _command(commands, "demo", _demo, demo)
    demo_command.set_defaults(default_log_level="WARNING")
    demo_command.add_argument("--seconds", type=float, help="stop after this long (default: run until Ctrl-C)")
    check = _command(commands, "check", _check, "check the configuration and test the connections", config=True)
    check.epilog = (
        "exit codes: 0 everything tested passed; 1 something to fix (the files, a credential, a permission, a"
        f" mailbox); {UNREACHABLE} something could not be reached, nothing known to be wrong (try again later)"
    )
    check.add_argument("--offline", action="store_true", help="check the files only; connect to nothing")

    _command(
        commands, "status", _status, "how the bridge stands: sources, mailboxes, subscriptions, backlog", config=True
    )
    db = _command(commands, "db", None, "database maintenance").add_subparsers(required=True, metavar="ACTION")
    _command(db, "upgrade", _db_upgrade, "create the database, or bring it to this version's schema", config=True)
    _command(
        db, "status", _db_status, "show the database's schema revision and what an upgrade would apply", config=True
    )

    mailboxes = _command(commands, "mailboxes", None, "list and manage the mirrored mailboxes")
    mailbox_actions = mailboxes.add_subparsers(required=True, metavar="ACTION")
    _command(mailbox_actions, "list", _mailboxes_list, "list the mailboxes and their state", config=True)
    add = _command(mailbox_actions, "add", _mailboxes_add, "mirror another mailbox", config=True)
    add.add_argument("address", type=_mail_address, help="the mailbox's SMTP address")
    add.add_argument("--workforce-id", required=True, type=_text, help="the person's id in the workforce system")
    add.add_argument("--source", help="the configured source to reach it through (default: the only one)")
    roster = _command(mailbox_actions, "import", _mailboxes_import, "enrol a roster from a CSV file", config=True)
    roster.add_argument("file", type=Path, metavar="FILE.csv", help="rows of: address, workforce id[, source]")
    roster.add_argument("--source", help="the source for rows that name none (default: the only one)")
    roster.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
    roster.add_argument(
        "--check-exchange", action="store_true",
        help="refuse rows whose mailbox Exchange refuses (one calendar read each; slower)",
    )  # fmt: skip
    group = _command(
        mailbox_actions, "sync-group", _mailboxes_sync_group, "follow a source's Entra ID group now", config=True
    )
    group.add_argument("source", help="a configured source with a group (sources.NAME.group)")
    group.add_argument("--dry-run", action="store_true", help="read the group, list what would change; change nothing")
    for name, handler, text in (
        ("remove", _mailboxes_remove, "stop mirroring a mailbox and withdraw what the workforce system shows"),
        ("enable", _mailboxes_enable, "resume a disabled or paused mailbox"),
        ("disable", _mailboxes_disable, "stop syncing a mailbox (what is shown stays)"),
        ("resync", _mailboxes_resync, "read a mailbox's whole window again"),
    ):
        _command(mailbox_actions, name, handler, text, config=True).add_argument(
            "address", help="the mailbox's SMTP address, as `mailboxes list` shows it"
        )

    service = _command(commands, "service", None, "the Windows service (docs/windows.md)")
    service_actions = service.add_subparsers(required=True, metavar="ACTION")
    install = _command(service_actions, "install", _service, "install the Windows service", config=True)
    install.add_argument("--account", help="the account it runs as (default: the virtual account NT SERVICE\\NAME)")
    for name, text in (
        ("remove", "remove the Windows service"),
        ("start", "start the Windows service"),
        ("stop", "stop the Windows service gracefully"),
        ("status", "show whether the Windows service runs"),
    ):
        _command(service_actions, name, _service, text)

    templates = _command(commands, "templates", None, "the template mapping")
    actions = templates.add_subparsers(required=True, metavar="ACTION")
    for name, handler, text in (
        ("validate", _templates_validate, "check a template mapping file"),
        ("show", _templates_show, "show what a template mapping does"),
    ):
        sub = _command(actions, name, handler, text)
        which = sub.add_mutually_exclusive_group()
        which.add_argument(
            "file",
            nargs="?",
            type=Path,
            metavar="FILE",
            help="default: the mapping --config names, else the shipped one",
        )
        which.add_argument(
            "--config", "-c", metavar="CONFIG", type=Path, help="the mapping in force for this configuration file"
        )
    diff = _command(
        actions, "diff", _templates_diff, "show what a mapping file would change, applying nothing", config=True
    )
    diff.add_argument("file", type=Path, metavar="FILE", help="the candidate mapping")
    _command(actions, "apply", _templates_apply, "confirm a held change of the mapping file", config=True)
    return parser


def _mail_address(value: str) -> str:
    if not MAIL_ADDRESS.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a mail address (name@domain)")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value.strip()


def _command(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler | None,
    text: str,
    *,
    config: bool = False,
) -> argparse.ArgumentParser:
    sub = parent.add_parser(name, help=text, description=text)
    sub.set_defaults(handler=handler, name=name, default_log_level="WARNING")
    # Also after the command, where a newcomer types it (`presence-bridge run --log-level DEBUG`); SUPPRESS keeps
    # a level given before the command when none is given after it.
    sub.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS, help=LOG_LEVEL_HELP)
    if config:
        sub.add_argument(
            "--config", "-c", metavar="FILE", type=Path, default=os.environ.get(CONFIG_ENV),
            help=f"the configuration file (default: ${CONFIG_ENV})",
        )  # fmt: skip
    return sub


def _config(args: argparse.Namespace) -> Config:
    if args.config is None:
        raise UserError("no configuration file", [f"pass --config FILE or set {CONFIG_ENV}"])
    config = load_config(args.config)
    logs.apply(config.source_log_levels, config.secrets())
    return config


def _check(args: argparse.Namespace) -> int:
    config = _config(args)
    mapping = load_mapping(config.templates or default_mapping_path())
    print(f"ok: {config.path}")
    for label, value in _summary(config, mapping):
        print(f"  {label + ':':<12} {value}")
    if args.offline:
        print("  connections: not tested (--offline)")
        return 0
    from bridge.preflight import Outcome, test_connections
    from bridge.sources.configured import build_sources  # the SDKs load only when they are needed

    async def test() -> list[Finding]:
        return await test_connections(config, build_sources(config))

    findings = [_check_database(config, args), *asyncio.run(test())]
    for finding in findings:
        mark = "ok" if finding.outcome is Outcome.OK else "FAILED"
        print(f"{mark}: {finding.subject}: {finding.text}")
    outcomes = {finding.outcome for finding in findings}
    # Something to fix wins: trying again later would not help.
    if Outcome.PROBLEM in outcomes:
        print(f"check: something above must be fixed (exit {CONFIGURATION})", file=sys.stderr)
        return CONFIGURATION
    if Outcome.UNREACHABLE in outcomes:
        print(f"check: could not connect to everything; try again later (exit {UNREACHABLE})", file=sys.stderr)
        return UNREACHABLE
    return 0


def _check_database(config: Config, args: argparse.Namespace) -> Finding:
    """Open the database (creating and migrating nothing) and say where its schema stands."""
    from bridge.preflight import Finding, Outcome
    from bridge.store.check import check_database

    report = check_database(config.database_url, upgrade=_upgrade_command(args))
    outcome = Outcome.OK if report.ok else Outcome.PROBLEM if report.connected else Outcome.UNREACHABLE
    return Finding(outcome, "database", "; ".join([report.summary, *report.problems]))


def _upgrade_command(args: argparse.Namespace) -> str:
    return f"presence-bridge db upgrade --config {args.config}"


def _summary(config: Config, mapping: TemplateMapping) -> list[tuple[str, str]]:
    rows = [
        ("database", config.database_url_shown),
        ("listen", f"{config.listen.host}:{config.listen.port}"),
        ("public url", config.public_url or "(none)"),
        ("templates", f"{config.templates or 'the shipped default'} ({len(mapping.show)} states shown)"),
    ]
    for source in config.sources.values():
        where = source.service_endpoint if isinstance(source, EwsSourceConfig) else f"tenant {source.tenant_id}"
        count = len(config.mailboxes_for(source.name))
        rows.append(("source", f"{source.name}: {source.kind}, {where}, {count} mailbox{'' if count == 1 else 'es'}"))
    rows.append(("mailboxes", str(len(config.mailboxes))))
    rows.append(("workforce", f"webhook {config.workforce.url}" if config.workforce.url else "pull feed only"))
    sync = config.sync
    rows.append(
        (
            "sync",
            f"reconcile every {format_duration(sync.reconcile_interval)}; pause a mailbox when one change deletes"
            f" {sync.mass_delete_share:.0%} of its appointments and at least {sync.mass_delete_min}",
        )
    )
    rows += [("api token", f"{t.name} ({', '.join(sorted(t.scopes))})") for t in config.api_tokens]
    return rows


def _db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)
    from bridge.store.db import Database  # the store pulls in SQLAlchemy and Alembic: only this command needs them

    database = Database(config.database_url)
    try:
        before = database.current_revision()
        database.upgrade()
        after = database.current_revision()
    finally:
        database.close()
    if before == after:
        print(f"{config.database_url_shown}: already at revision {after}")
    else:
        print(f"{config.database_url_shown}: upgraded from revision {before or '(empty)'} to {after}")
        _audit("db upgrade")
    return 0


def _mapping_path(args: argparse.Namespace) -> Path:
    """The mapping a `templates` command is about: FILE, the one a config names, or the shipped default."""
    if args.file is not None:
        return Path(args.file)
    if args.config is not None:
        return load_config(args.config).templates or default_mapping_path()
    return default_mapping_path()


def _status(args: argparse.Namespace) -> int:
    from bridge.status import DETAILS, status_text
    from bridge.store.summary import summarise

    def show(session: Session, config: Config) -> str:
        return status_text(summarise(session, datetime.now(UTC), details=DETAILS), config.database_url_shown)

    return _admin(args, show)


def _db_status(args: argparse.Namespace) -> int:
    config = _config(args)
    from bridge.store.db import Database

    database = Database(config.database_url)
    try:
        state = database.revisions()
    finally:
        database.close()
    print(f"database: {config.database_url_shown}")
    print(f"current:  {state.current or '(empty)'}")
    print(f"head:     {state.head}{'' if state.known else ' (the database is newer than this version)'}")
    print(f"pending:  {', '.join(state.pending) or 'none'}")
    if state.known and not state.up_to_date:
        print(f"run `{_upgrade_command(args)}` to apply them", file=sys.stderr)
    return 0 if state.up_to_date else 1


def _templates_validate(args: argparse.Namespace) -> int:
    path = _mapping_path(args)
    load_mapping(path)
    print(f"ok: {path}")
    return 0


def _templates_show(args: argparse.Namespace) -> int:
    path = _mapping_path(args)
    mapping = load_mapping(path)
    print(f"mapping:       {path}" + (f" (in force for {args.config})" if args.config else ""))
    print(f"ignore prefix: {mapping.ignore_prefix!r} (subjects starting with it are not shown)")
    print(f"days ahead:    {mapping.days_ahead} (appointments in [today, today + {mapping.days_ahead} days])")
    print(f"precedence:    {' > '.join(mapping.precedence)} (where appointments overlap)")
    print()
    rows: list[tuple[str, ...]] = [
        ("Exchange state", "template", "written as", "all day", "state until", "category", "subject")
    ]
    for state in (*mapping.precedence, *(s for s in SHOWABLE if s not in mapping.precedence)):
        template = mapping.show.get(state)
        rows.append(_rule_row(state, mapping.templates[template]) if template else (state, "(not shown)"))
    rows.append((FreeBusy.FREE, "(never shown)"))
    shown = set(mapping.show.values())
    rows += [_rule_row("(write only)", rule) for name, rule in mapping.templates.items() if name not in shown]
    print(_table(rows))
    return 0


def _templates_diff(args: argparse.Namespace) -> int:
    candidate = load_mapping(args.file)
    from bridge.mapping_change import preview_remap

    def show(session: Session, config: Config) -> str:
        preview = preview_remap(session, candidate)
        lines = [f"{args.file} against what the workforce system shows now:", *_preview_lines(preview.as_json())]
        if preview.is_mass_withdrawal(config.sync):
            lines.append(
                "as a live change it would be HELD (it withdraws at least the mass-delete share of what is shown) "
                f"until `presence-bridge templates apply --config {config.path}`"
            )
        elif preview.changes:
            lines.append("as a live change it would apply at once")
        return "\n".join(lines)

    return _admin(args, show)


def _templates_apply(args: argparse.Namespace) -> int:
    from bridge.store.mapping_state import approve_held, held_mapping
    from bridge.templates import mapping_digest

    def confirm(session: Session, config: Config) -> str:
        path = config.templates or default_mapping_path()
        held = held_mapping(session)
        if held is None:
            raise UserError(
                "no change of the template mapping is held", ["the running bridge applies small changes by itself"]
            )
        if held.digest != mapping_digest(path.read_bytes()):
            raise UserError(
                f"{path} is not the file that was held",
                ["it changed since; the running bridge looks at it again within seconds (run this again if held)"],
            )
        approve_held(session, held.digest, f"presence-bridge templates apply ({getpass.getuser()})", datetime.now(UTC))
        lines = [f"{path}:", *_preview_lines(held.preview)]
        return "\n".join([*lines, "confirmed: the running bridge applies it within a few seconds"])

    return _admin(args, confirm, audit="templates apply")


def _preview_lines(preview: dict[str, Any]) -> list[str]:
    """A mapping change's preview (bridge/mapping_change.py, as JSON) as the CLI prints it."""
    mailboxes = preview["mailboxes"]
    if not mailboxes:
        return ["  nothing the workforce system shows would change"]
    lines = []
    for mailbox in mailboxes:
        counts = f"{mailbox['created']} created, {mailbox['updated']} updated, {mailbox['withdrawn']} withdrawn"
        lines.append(f"  {mailbox['address']}: {counts} (of {mailbox['shown']} shown)")
        for kind, examples in mailbox["examples"].items():
            lines += [f"    {kind + ':':<10} {example}" for example in examples]
    shown = sum(mailbox["shown"] for mailbox in mailboxes)
    lines.append(
        f"  in all: {preview['created']} created, {preview['updated']} updated, {preview['withdrawn']} withdrawn "
        f"(of {shown} shown in these {len(mailboxes)} mailboxes)"
    )
    return lines


def _rule_row(state: str, rule: TemplateRule) -> tuple[str, ...]:
    until = END_OF_DAY.value if rule.state_until is END_OF_DAY else format_duration(rule.state_until)
    return (
        state,
        rule.name,
        rule.show_as,
        "yes" if rule.all_day else "no",
        until,
        rule.category or "-",
        rule.subject or "-",
    )


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows
    )


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    load_mapping(config.templates or default_mapping_path())  # a bad mapping stops the start, with its lines
    from bridge.lifecycle import BridgeRun  # the service pulls in the SDKs: only `run` and `demo` need them
    from bridge.sdnotify import SystemdNotifier

    run = BridgeRun(config, SystemdNotifier.from_environment())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run.serve(signals=True))
    return 0


def _service(args: argparse.Namespace) -> int:
    from bridge import winservice

    manager = winservice.system_manager()  # first: off Windows, that is the one thing to say
    installation = None
    if args.name == "install":
        account = args.account or winservice.DEFAULT_ACCOUNT
        password = getpass.getpass(f"password of {account}: ") if winservice.needs_password(account) else None
        installation = winservice.plan_installation(_config(args), account, password)
    print(winservice.manage(args.name, manager, installation))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo  # the emulators and the SDKs: only the demo needs them all

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(duration_s=args.seconds))
    return 0


def _database(args: argparse.Namespace) -> tuple[Config, Database]:
    config = _config(args)
    from bridge.admin import register
    from bridge.store.db import Database
    from bridge.store.revisions import require_current

    database = Database(config.database_url)
    try:
        require_current(database.revisions(), config.database_url_shown, _upgrade_command(args))
        with database.session() as session:
            register(session, config, datetime.now(UTC))
    except BaseException:
        database.close()
        raise
    return config, database


def _admin(args: argparse.Namespace, work: Callable[[Session, Config], str], *, audit: str | None = None) -> int:
    """`work` in one transaction; `audit` names the change it makes, for the audit trail (None: it reads only)."""
    config, database = _database(args)
    try:
        with database.session() as session:
            print(work(session, config))
    finally:
        database.close()
    if audit is not None:
        _audit(audit)
    return 0


def _audit(action: str) -> None:
    logging.getLogger(logs.AUDIT).info("%s by %s on the command line", action, getpass.getuser())


def _mailboxes_list(args: argparse.Namespace) -> int:
    from bridge.admin import list_mailboxes

    def show(session: Session, config: Config) -> str:
        rows = [("address", "workforce id", "source", "status", "time zone", "last synced", "note")]
        for view in list_mailboxes(session):
            synced = view.last_synced_at.strftime("%Y-%m-%d %H:%M:%SZ") if view.last_synced_at else "never"
            note = view.reason or ("sync pending" if view.dirty else "")
            zone = view.time_zone or "-"  # not read yet
            rows.append((view.address, view.workforce_id or "-", view.source, view.status, zone, synced, note))
        return _table(rows)

    return _admin(args, show)


def _mailboxes_add(args: argparse.Namespace) -> int:
    from bridge.admin import add_mailbox

    def add(session: Session, config: Config) -> str:
        source: str = args.source or (next(iter(config.sources)) if len(config.sources) == 1 else "")
        if source not in config.sources:
            raise UserError("--source must name a configured source", [f"configured: {', '.join(config.sources)}"])
        add_mailbox(session, args.address, args.workforce_id, source, datetime.now(UTC))
        return f"{args.address}: added; a running bridge syncs it within seconds"

    return _admin(args, add, audit=f"mailboxes add {args.address}")


def _mailboxes_import(args: argparse.Namespace) -> int:
    from bridge import roster

    try:
        rows = roster.read_csv(args.file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the roster {args.file}", [str(exc)]) from exc

    if args.check_exchange:
        _check_exchange(args, rows)

    def act(session: Session, config: Config) -> str:
        planned = roster.plan(session, rows, list(config.sources), default_source=args.source)
        if not args.dry_run:
            roster.apply(session, planned, datetime.now(UTC))
        return "\n".join(roster.describe(planned, dry_run=args.dry_run))

    return _admin(args, act, audit=None if args.dry_run else f"mailboxes import {args.file}")


def _check_exchange(args: argparse.Namespace, rows: list[RosterRow]) -> None:
    """Refuse the roster if Exchange refuses a mailbox it would start syncing; asked outside any transaction, since
    it may take minutes (the import plans again afterwards)."""
    from bridge import roster

    config, database = _database(args)
    try:
        with database.session() as session:
            planned = roster.plan(session, rows, list(config.sources), default_source=args.source)
    finally:
        database.close()
    problems = asyncio.run(_unknown_to_exchange(config, planned))
    if problems:
        raise roster.RosterRefused(f"Exchange refuses {len(problems)} mailbox(es); nothing was changed", problems)


async def _unknown_to_exchange(config: Config, planned: RosterPlan) -> list[str]:
    from bridge import roster
    from bridge.sources.configured import build_sources  # the SDKs load only when they are needed

    sources = build_sources(config)
    try:
        return await roster.unknown_to_exchange(sources, planned)
    finally:
        for source in sources.values():
            await source.close()


def _mailboxes_sync_group(args: argparse.Namespace) -> int:
    """What the running bridge does at each refresh of the group, now (or only shown, `--dry-run`)."""
    from bridge.roster import describe

    config, database = _database(args)
    try:
        groups = config.source_groups
        if args.source not in groups:
            raise UserError(
                f"source {args.source} has no group (sources.{args.source}.group)",
                [f"sources with a group: {', '.join(groups) or 'none'}"],
            )
        planned = asyncio.run(_sync_group(config, database, args.source, groups[args.source], dry_run=args.dry_run))
    finally:
        database.close()
    print("\n".join(describe(planned, dry_run=args.dry_run)))
    if not args.dry_run:
        _audit(f"mailboxes sync-group {args.source}")
    return 0


async def _sync_group(
    config: Config, database: Database, source: str, group: GroupConfig, *, dry_run: bool
) -> RosterPlan:
    from bridge.group_roster import sync_group
    from bridge.sources.base import GroupDirectory, SourceError
    from bridge.sources.configured import build_sources  # the SDKs load only when they are needed

    sources = build_sources(config)
    try:
        directory = sources[source]
        assert isinstance(directory, GroupDirectory)  # the config's schema allows a group on a Graph source only
        mapping = load_mapping(config.templates or default_mapping_path())
        return await sync_group(database, source, directory, sources[source], group, mapping, dry_run=dry_run)
    except SourceError as exc:
        raise UserError(f"the group of source {source} could not be read", [str(exc)]) from exc
    finally:
        for built in sources.values():
            await built.close()


def _mailboxes_remove(args: argparse.Namespace) -> int:
    from bridge.admin import remove

    def act(session: Session, config: Config) -> str:
        mapping = load_mapping(config.templates or default_mapping_path())
        withdrawn = remove(session, args.address, mapping, datetime.now(UTC))
        return f"{args.address}: removed; {withdrawn} appointments withdrawn from the workforce system"

    return _admin(args, act, audit=f"mailboxes {args.name} {args.address}")


def _mailboxes_enable(args: argparse.Namespace) -> int:
    from bridge.admin import enable

    def act(session: Session, config: Config) -> str:
        enable(session, args.address, datetime.now(UTC))
        return f"{args.address}: enabled; it syncs within seconds"

    return _admin(args, act, audit=f"mailboxes {args.name} {args.address}")


def _mailboxes_disable(args: argparse.Namespace) -> int:
    from bridge.admin import disable

    def act(session: Session, config: Config) -> str:
        disable(session, args.address, "disabled by an administrator")
        return f"{args.address}: disabled; what the workforce system shows stays as it is"

    return _admin(args, act, audit=f"mailboxes {args.name} {args.address}")


def _mailboxes_resync(args: argparse.Namespace) -> int:
    from bridge.admin import resync

    def act(session: Session, config: Config) -> str:
        resync(session, args.address, datetime.now(UTC))
        return f"{args.address}: its whole window is read again on the next sync"

    return _admin(args, act, audit=f"mailboxes {args.name} {args.address}")
