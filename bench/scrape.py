"""What a `/metrics` scrape and a `presence-bridge status` cost in the database as the history grows.

Both read one summary (bridge/store/summary.py): counts grouped by source and status, the undelivered part of the
outbox (indexed), and for the status capped lists. It fills a SQLite file (or a PostgreSQL schema, with
`--database URL`) with `--mailboxes` mailboxes, one subscription each, `--delivered` delivered changes (the
history a year of running leaves) and `--undelivered` waiting ones, then times both reads. The offered load is the
table sizes; the achieved figure is the time per read.

Run: .venv/bin/python bench/scrape.py [--delivered 200000] [--database postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.domain import ChangeType
from bridge.store import Database, MailboxRow, OutboxRow, SourceKind, SourceRow, SubscriptionRow
from bridge.store.summary import summarise

ROUNDS = 20


def fill(db: Database, mailboxes: int, delivered: int, undelivered: int, now: datetime) -> None:
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
        rows = [MailboxRow(address=f"person{n}@contoso.com", source="online") for n in range(mailboxes)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows if row.id is not None]
        session.add_all(
            SubscriptionRow(
                id=str(uuid.uuid4()),
                mailbox_id=mailbox_id,
                source="online",
                resource="/users/x/events",
                client_state="state",
                expires_at=now + timedelta(hours=n % 72),
            )
            for n, mailbox_id in enumerate(ids)
        )
    table = OutboxRow.__table__  # type: ignore[attr-defined]
    for start in range(0, delivered + undelivered, 10_000):
        batch = []
        for n in range(start, min(start + 10_000, delivered + undelivered)):
            done = n < delivered
            batch.append(
                {
                    "change_id": str(uuid.uuid4()),
                    "mailbox_id": ids[n % len(ids)],
                    "sequence": n // len(ids) + 1,
                    "change_type": ChangeType.CREATED,
                    "payload": {},
                    "created_at": now - timedelta(seconds=delivered + undelivered - n),
                    "delivered_at": now if done else None,
                    "attempts": 1 if done else 0,
                    "next_attempt_at": now,
                    "last_error": None if done or n % 2 else "answered 503",
                }
            )
        with db.engine.begin() as connection:
            connection.execute(sa.insert(table), batch)


def timed(db: Database, now: datetime, details: int) -> list[float]:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        with db.session() as session:
            summarise(session, now, details=details)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--delivered", type=int, default=200_000)
    parser.add_argument("--undelivered", type=int, default=2_000)
    parser.add_argument("--database", help="a PostgreSQL URL (a schema is made and dropped); default: SQLite")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "offered": {"mailboxes": args.mailboxes, "delivered": args.delivered, "undelivered": args.undelivered}
    }
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        schema = None if args.database is None else f"bench_{secrets.token_hex(4)}"
        url = args.database or f"sqlite:///{Path(folder) / 'bench.db'}"
        if schema is not None:
            with sa.create_engine(Database(url).url).begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        db = Database(url, schema=schema)
        try:
            db.upgrade()
            fill(db, args.mailboxes, args.delivered, args.undelivered, now)
            for name, details in (("scrape", 0), ("status", 10)):
                samples = timed(db, now, details)
                result[f"{name}_ms_p50"] = round(statistics.median(samples), 2)
                result[f"{name}_ms_max"] = round(max(samples), 2)
                print(
                    f"{name}: {ROUNDS} reads, median {result[f'{name}_ms_p50']} ms, max {result[f'{name}_ms_max']} ms"
                )
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            db.close()
            if schema is not None:
                with sa.create_engine(Database(url).url).begin() as connection:
                    connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    print(json.dumps(result))


if __name__ == "__main__":
    main()
