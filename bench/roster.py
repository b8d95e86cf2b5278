"""How long enrolling a roster of 10,000 people takes: `presence-bridge mailboxes import FILE.csv`, end to end.

Each run writes a 10,000-row CSV, then runs the command line's import (read, check against the database, write
in one transaction) in a fresh database: SQLite in a temporary directory, and PostgreSQL at 127.0.0.1:5432 in a
schema of its own when it answers. Offered: the rows; achieved: seconds from start to exit, for a dry run and
for the real import, and the rows the database then holds.

With `--check-rows N` it also times `--check-exchange` for N new mailboxes against the Graph emulator on
loopback (no latency added: the figure is the bridge's side and the emulator's, not Microsoft's). With
`--group-rows N` it times following an Entra ID group of N members (nested in two groups) the first time
(reading the members, asking Exchange about each, enrolling them; SQLite) and again with nothing changed.

Run: .venv/bin/python bench/roster.py [--rows 10000] [--check-rows 1000] [--group-rows 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlmodel import func, select

from bridge import roster
from bridge.config import GraphSourceConfig, GroupConfig
from bridge.group_roster import sync_group
from bridge.sources.graph import GraphSource, graph_source
from bridge.store import Database, MailboxRow
from bridge.templates import default_mapping_path, load_mapping
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def import_once(db: Database, text: str, *, dry_run: bool) -> float:
    started = time.perf_counter()
    rows = roster.read_csv(text)
    with db.session() as session:
        planned = roster.plan(session, rows, ["online"])
        if not dry_run:
            roster.apply(session, planned, datetime.now(UTC))
    return time.perf_counter() - started


def measure(db: Database, text: str) -> dict[str, Any]:
    db.upgrade()
    dry = import_once(db, text, dry_run=True)
    real = import_once(db, text, dry_run=False)
    again = import_once(db, text, dry_run=False)  # every row known: all unchanged
    with db.session() as session:
        held = session.exec(select(func.count()).select_from(MailboxRow)).one()
    return {"dry_run_s": round(dry, 3), "import_s": round(real, 3), "reimport_s": round(again, 3), "rows_held": held}


def _source_of(emulator: GraphEmulator, app: AppRegistration) -> GraphSource:
    """The Graph source `online`, as the bridge builds it, for the emulator's app."""
    config = GraphSourceConfig(
        name="online", tenant_id=app.tenant_id, client_id=app.client_id, client_secret=app.client_secret,
        authority_host=emulator.authority, graph_url=emulator.graph_url, ca_file=emulator.ca_file,
    )  # fmt: skip
    return graph_source(config)


async def check_exchange(rows: int, directory: Path) -> dict[str, Any]:
    """`--check-exchange` for `rows` new mailboxes (the last one unknown to the tenant) against the Graph emulator."""
    emulator = GraphEmulator(ca_file=directory / "graph-ca.pem")
    app = emulator.add_app()
    for n in range(rows - 1):
        emulator.add_user(f"person{n}@contoso.com")
    await emulator.start()
    source = _source_of(emulator, app)
    planned = roster.RosterPlan(
        added=[roster.Enrolment(f"person{n}@contoso.com", f"E{n:06d}", "online", f"line {n + 1}") for n in range(rows)]
    )
    try:
        started = time.perf_counter()
        refused = await roster.unknown_to_exchange({"online": source}, planned)
        spent = time.perf_counter() - started
    finally:
        await source.close()
        await emulator.stop()
    return {"rows": rows, "seconds": round(spent, 3), "refused": len(refused)}


async def follow_group(rows: int, directory: Path) -> dict[str, Any]:
    """`sync_group` for a group of `rows` members (half of them in a nested group) against the Graph emulator."""
    emulator = GraphEmulator(ca_file=directory / "graph-ca.pem")
    app = emulator.add_app()
    people = [emulator.add_user(f"person{n}@contoso.com", employee_id=f"E{n:06d}").id for n in range(rows)]
    nested = emulator.add_group("Nested", people[rows // 2 :])
    group = emulator.add_group("Team", [*people[: rows // 2], nested.id])
    await emulator.start()
    source = _source_of(emulator, app)
    db = Database(f"sqlite:///{directory / 'group.db'}")
    db.upgrade()
    settings = GroupConfig(id=group.id)
    try:
        started = time.perf_counter()
        members = await source.group_members(group.id)
        read = time.perf_counter() - started
        started = time.perf_counter()
        first = await sync_group(db, "online", source, source, settings, load_mapping(default_mapping_path()))
        enrolled = time.perf_counter() - started
        started = time.perf_counter()
        again = await sync_group(db, "online", source, source, settings, load_mapping(default_mapping_path()))
        unchanged = time.perf_counter() - started
    finally:
        await source.close()
        db.close()
        await emulator.stop()
    return {
        "members_offered": rows,
        "members_read": len(members),
        "read_s": round(read, 3),
        "first_sync_s": round(enrolled, 3),
        "added": len(first.added),
        "skipped": len(first.skipped),
        "again_s": round(unchanged, 3),
        "again_unchanged": again.unchanged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--check-rows", type=int, default=0)
    parser.add_argument("--group-rows", type=int, default=0)
    args = parser.parse_args()
    text = "address,workforce_id\n" + "".join(f"person{n}@contoso.com,E{n:06d}\n" for n in range(args.rows))
    result: dict[str, Any] = {"rows_offered": args.rows, "errors": []}
    with tempfile.TemporaryDirectory() as directory:
        db = Database(f"sqlite:///{Path(directory) / 'bridge.db'}")
        try:
            result["sqlite"] = measure(db, text)
        finally:
            db.close()
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        result["errors"].append(f"postgresql: {exc}")
    else:
        schema = f"bench_{secrets.token_hex(6)}"
        with admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            db = Database(POSTGRES_URL, schema=schema)
            try:
                result["postgresql"] = measure(db, text)
            finally:
                db.close()
                admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    if args.check_rows:
        with tempfile.TemporaryDirectory() as directory:
            result["check_exchange"] = asyncio.run(check_exchange(args.check_rows, Path(directory)))
        figures = result["check_exchange"]
        print(f"--check-exchange: {figures['rows']} mailboxes asked, {figures['refused']} refused, "
              f"{figures['seconds']} s")  # fmt: skip
    if args.group_rows:
        with tempfile.TemporaryDirectory() as directory:
            result["group"] = asyncio.run(follow_group(args.group_rows, Path(directory)))
        group = result["group"]
        print(f"group of {group['members_offered']} members: read {group['members_read']} in {group['read_s']} s; "
              f"first sync {group['first_sync_s']} s ({group['added']} added, {group['skipped']} skipped); "
              f"again {group['again_s']} s ({group['again_unchanged']} unchanged)")  # fmt: skip
    for backend in ("sqlite", "postgresql"):
        if backend in result:
            figures = result[backend]
            print(
                f"{backend}: {args.rows} rows offered; dry run {figures['dry_run_s']} s, import "
                f"{figures['import_s']} s, re-import {figures['reimport_s']} s; {figures['rows_held']} rows held"
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
