"""The database handle: a synchronous SQLAlchemy engine that async code reaches through a small thread pool.

Every unit of work is one transaction (`Database.run` from async code, `Database.session` from sync code), so
whatever a function writes commits together or not at all (DESIGN §3.3).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import operator
import os
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Dialect, Engine, ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session

from bridge.errors import UserError
from bridge.redact import url_shown
from bridge.store.revisions import Revisions, refuse_newer, revisions

T = TypeVar("T")
Job = TypeVar("Job")
Outcome = TypeVar("Outcome")

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_URL_FORMS = "expected sqlite:///PATH/TO/FILE.db or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for a `database_url` setting, with PostgreSQL pinned to the psycopg 3 driver."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        # The text is not echoed: it may hold a password.
        raise UserError("database_url is not a database URL", [_URL_FORMS]) from None
    backend, _, driver = parsed.drivername.partition("+")
    shown = url_shown(url)
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty in-memory database.
            raise UserError(f"database_url {shown} names no file", [_URL_FORMS])
        return parsed
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise UserError(f"database_url {shown} is not supported", [_URL_FORMS])


class Database:
    """The bridge's database: SQLite (one instance) or PostgreSQL (several instances sharing the work).

    `schema` (PostgreSQL only) puts the bridge's tables, and Alembic's version table, in that schema.
    """

    def __init__(self, url: str, *, schema: str | None = None, workers: int = 4) -> None:
        self.url = parse_url(url)
        self._shown = url_shown(url)
        self.backend = self.url.get_backend_name()
        if schema is not None and (self.backend != "postgresql" or not _SCHEMA_NAME.fullmatch(schema)):
            raise UserError(
                f"database schema {schema!r} is not usable", ["a schema needs PostgreSQL and a plain SQL name"]
            )
        self.schema = schema
        self._instance: str | None = None
        # SQLite lets one transaction write at a time, and every transaction here takes the write lock up front:
        # several threads would only queue inside SQLite's busy handler, whose sleeps (up to 100 ms each) turned
        # contention into seconds of latency (docs/storage.md). One thread queues them in order instead.
        if self.backend == "sqlite":
            workers = 1
        self.engine = self._create_engine(workers)
        sa.event.listen(self.engine, "handle_error", self._unreachable)
        self._threads = _Threads(workers, "bridge-db")

    def _create_engine(self, workers: int) -> Engine:
        if self.backend == "sqlite":
            try:
                _private_file(Path(self.url.database or ""))
            except OSError as exc:
                raise UserError(f"database_url {self._shown}: cannot open the database", [str(exc)]) from None
            engine = sa.create_engine(self.url, pool_size=workers, max_overflow=workers)
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
            return engine
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in self.url.query:
            # Without it a silently dropped SYN keeps the caller waiting for the kernel's TCP timeout.
            connect_args["connect_timeout"] = 10
        if self.schema is not None:
            connect_args["options"] = f"-c search_path={self.schema}"
        engine = sa.create_engine(
            self.url,
            pool_size=workers,
            max_overflow=workers,
            pool_pre_ping=True,
            connect_args=connect_args,
        )
        sa.event.listen(engine, "do_connect", self._name_connection)
        return engine

    def name_instance(self, name: str) -> None:
        """Open every connection from now on as instance `name` (PostgreSQL's application_name), so that the other
        instances see it is alive (`connected_instances`) and a DBA sees whose connection is whose."""
        self._instance = name
        self.engine.dispose()  # connections opened before are reopened under the name

    def _name_connection(self, _dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        if self._instance is not None:
            params["application_name"] = _application_name(self._instance)

    def _unreachable(self, context: ExceptionContext) -> None:
        # Only a failure to connect is the user's to fix; a failing statement is the caller's business.
        if context.connection is None and not context.is_pre_ping:
            said = str(context.original_exception)
            if self.url.password:
                said = said.replace(str(self.url.password), "***")  # drivers may echo the connection string
            reason = [line.strip() for line in said.splitlines() if line.strip()]
            raise UserError(
                f"database_url {self._shown}: cannot open the database",
                reason or [type(context.original_exception).__name__],
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction for sync callers: committed when the block ends, rolled back if it raises.

        Objects stay usable after the commit (they are not expired), so they can be returned to async code.
        """
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    async def run(self, fn: Callable[[Session], T], *, urgent: bool = False) -> T:
        """`fn(session)` in one transaction on the pool's thread, so the event loop never waits on the database.

        `urgent`: someone is waiting for the answer (a workforce command's), so it goes before any work still queued:
        a command's answer then waits for no sync, claim or delivery that came first (bench/relay.py, docs/storage.md).
        Cancelling the caller does not stop `fn`: it finishes (and commits) in its thread regardless.
        """
        return await self._threads.call(_URGENT if urgent else _NORMAL, self._transaction, fn)

    def _transaction(self, fn: Callable[[Session], T]) -> T:
        with self.session() as session:
            return fn(session)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Whether this instance, of all sharing the database, is the one doing `name` for the block (PostgreSQL:
        a session advisory lock, released when the block ends or the instance's connection drops, so a killed
        instance frees it at once); SQLite has one instance, which always is.
        """
        if self.backend != "postgresql":
            yield True
            return
        connection = await self._threads.call(_NORMAL, self.engine.connect)
        held = False
        try:
            held = await self._threads.call(_NORMAL, _advisory, connection, "pg_try_advisory_lock", name)
            yield held
        finally:
            await self._threads.call(_NORMAL, _release, connection, name, held)

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (`presence-bridge db upgrade`); a no-op when it is already."""
        config = self._alembic_config()
        with self.engine.begin() as connection:
            if self.backend == "postgresql":
                # Instances started together must not run the same migration twice.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('presence-bridge migrations'))"))
                if self.schema is not None and not self._schema_exists(connection):
                    # Not CREATE SCHEMA IF NOT EXISTS: that needs CREATE on the database even when the schema
                    # is there, which a DBA who made the schema for the bridge need not have granted.
                    connection.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
            refuse_newer(revisions(ScriptDirectory.from_config(config), _revision_of(connection)))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _schema_exists(self, connection: Connection) -> bool:
        found = connection.execute(
            sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": self.schema}
        ).first()
        return found is not None

    def current_revision(self) -> str | None:
        """The schema's Alembic revision; None for a database never upgraded."""
        if self.backend == "sqlite" and not Path(self.url.database or "").exists():
            return None  # connecting would create the file: only `db upgrade` and `run` may
        with self.engine.connect() as connection:
            return _revision_of(connection)

    def revisions(self) -> Revisions:
        """Where the schema stands against this version's migrations (`presence-bridge db status`)."""
        return revisions(ScriptDirectory.from_config(self._alembic_config()), self.current_revision())

    def head_revision(self) -> str | None:
        """The newest revision this version of the bridge knows."""
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def close(self) -> None:
        """Wait for running work, then close every pooled connection."""
        self._threads.shutdown()
        self.engine.dispose()

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config


class GroupCommit(Generic[Job, Outcome]):
    """Units of work that come while one transaction is under way go together in the next: one BEGIN, COMMIT and
    thread hop for the group instead of one each, which cost more than the statements of a small unit.

    `commit(session, jobs)` does them all in one transaction and returns each one's outcome in order; an outcome
    that is an exception is raised to that job's caller alone. If the transaction fails, each job of the group is
    done alone, so that one job the database refuses costs no other its commit. At most `most` jobs go together,
    when given: a relay command's urgent transaction waits for the one under way, so that one stays short.
    """

    def __init__(
        self,
        db: Database,
        commit: Callable[[Session, list[Job]], Sequence[Outcome | Exception]],
        *,
        most: int | None = None,
    ) -> None:
        self._db = db
        self._commit = commit
        self._most = most
        self._waiting: list[tuple[Job, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, job: Job) -> Outcome:
        """Do `job` in a transaction, committed when this returns; its outcome, or its exception raised."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, done))
        if self._writer is None:
            # Started as a task, not here: the jobs submitted in this turn of the event loop join the first group.
            self._writer = asyncio.create_task(self._write_waiting())
        return await done

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                most = len(self._waiting) if self._most is None else self._most
                group, self._waiting = self._waiting[:most], self._waiting[most:]
                await self._write(group)
        finally:
            self._writer = None

    async def _write(self, group: list[tuple[Job, asyncio.Future[Outcome]]]) -> None:
        try:
            jobs = [job for job, _ in group]
            outcomes = await self._db.run(lambda session: self._commit(session, jobs))
        except Exception as exc:
            if len(group) > 1:
                for one in group:
                    await self._write([one])
            elif not group[0][1].done():
                group[0][1].set_exception(exc)
            return
        for (_, done), outcome in zip(group, outcomes, strict=True):
            if done.done():
                continue  # its caller was cancelled meanwhile
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)


_URGENT, _NORMAL, _LAST = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Item:
    """A call for the database threads, whose outcome goes to `future` on its event loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]

    def run(self) -> None:
        # Read from this thread without the loop's lock: at worst a cancel that just came is missed, as one that
        # comes once the work started always is.
        if self.future.cancelled():
            return  # cancelled before it started
        try:
            outcome: tuple[Any, BaseException | None] = (self.fn(*self.args), None)
        except BaseException as exc:
            outcome = (None, exc)
        # Straight to the awaited future: a concurrent.futures.Future in between (run_in_executor) cost as much
        # again as the thread hop itself (47 against 27 µs of CPU per call).
        with suppress(RuntimeError):  # the loop was closed meanwhile: nobody waits any more
            self.loop.call_soon_threadsafe(_settle, self.future, *outcome)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class _Threads:
    """The database threads: units of work in the order they came, except that urgent work goes before whatever is
    still queued (a ThreadPoolExecutor has one queue in arrival order)."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, _Item | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def call(self, priority: int, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` on a database thread; its outcome in the future (of the running loop)."""
        if self._closed:
            raise RuntimeError("the database is closed: no work is taken any more")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((priority, next(self._order), _Item(loop, future, fn, args)))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()[2]) is not None:
            item.run()

    def shutdown(self) -> None:
        """Run what is queued, then end every thread; work submitted after is refused."""
        self._closed = True
        for _ in self._threads:
            self._queue.put((_LAST, next(self._order), None))
        for thread in self._threads:
            thread.join()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def connected_instances(session: Session, names: Collection[str]) -> set[str]:
    """Which of these instances have a connection open to the database (PostgreSQL): a killed instance's
    connections close with its process, so its work can be taken over without waiting for its leases to expire.
    SQLite has no such view: none is said to be connected.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql" or not names:
        return set()
    wanted = {_application_name(name): name for name in names}
    found = connection.execute(
        sa.text("SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name = ANY(:names)"),
        {"names": sorted(wanted)},
    ).scalars()
    return {wanted[application] for application in found}


def _application_name(instance: str) -> str:
    # PostgreSQL keeps 63 bytes of it; an instance name (host:pid:random) longer than that would be cut and
    # then never match, so a long host name is shortened here and the pid and random part are always kept.
    host, _, rest = instance.partition(":")
    return f"presence-bridge {host[: 62 - len('presence-bridge ') - len(rest)]}:{rest}"


def _advisory(connection: Connection, function: str, name: str) -> bool:
    statement = sa.text(f"SELECT {function}(hashtext(current_schema() || '.' || :name))")
    result = connection.execute(statement, {"name": name}).scalar()
    connection.commit()
    return result is not False


def _release(connection: Connection, name: str, held: bool) -> None:
    try:
        if held:
            _advisory(connection, "pg_advisory_unlock", name)
    finally:
        connection.close()


# Values to a statement that names each one (an IN list): SQLite takes at most 32,766 parameters to a statement
# and PostgreSQL 65,535, which a list of every mailbox reaches at 100,000 mailboxes.
IN_LIST_MOST = 10_000


def in_chunks(values: Sequence[T], size: int = IN_LIST_MOST) -> Iterator[Sequence[T]]:
    """`values` in runs of at most `size` (by default, as many as a statement naming each of them takes)."""
    for first in range(0, len(values), size):
        yield values[first : first + size]


def execute_rows(session: Session, statement: sa.Insert | sa.Update, rows: Sequence[Mapping[str, Any]]) -> int:
    """Execute `statement` once for each row (the driver's executemany); every row has the same keys, and its
    values are in the form the driver takes (`models.driver_values`: timestamps and JSON encoded, enums as their
    values). Returns the number of rows the statement changed in all.

    SQLAlchemy's own executemany passes each value of each row through its type's processing and keeps books per
    row: for a sync commit's forty outbox and forty mirror rows that cost more than SQLite's executing them.
    """
    if not rows:
        return 0
    connection = session.connection()
    sql, positions = _driver_statement(statement, connection.dialect, tuple(rows[0]))
    parameters = [positions(row) for row in rows] if positions is not None else list(rows)
    return int(connection.exec_driver_sql(sql, parameters).rowcount)


@functools.lru_cache(maxsize=64)
def _driver_statement(
    statement: sa.Insert | sa.Update, dialect: Dialect, keys: tuple[str, ...]
) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]] | None]:
    """`statement`'s SQL for executing it with rows of these keys, and, for a driver taking its parameters by
    position (SQLite), what makes a row's tuple of them."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise ValueError("the statement has defaults computed in Python: give every value in the rows")
    if compiled.positiontup is None:
        return compiled.string, None
    order = tuple(compiled.positiontup)
    if len(order) == 1:
        return compiled.string, lambda row: (row[order[0]],)
    return compiled.string, operator.itemgetter(*order)


def lock_outbox(session: Session) -> None:
    """Hold the outbox open for writing until this transaction ends; call it just before adding outbox rows.

    The pull feed reads `id > cursor`, and on PostgreSQL ids are handed out at insert but become visible at commit:
    a reader could see id 11, move its cursor past it, and never see id 10 commit later. Writers therefore hold
    this lock in shared mode (they do not wait for each other) and a feed reader takes it in exclusive mode
    (`settle_outbox`) before it reads: that waits for every writer holding an id to commit or roll back, so the
    reader sees every id below the highest it sees. SQLite already has one writer at a time.
    """
    _advisory_xact(session, "pg_advisory_xact_lock_shared", "outbox")


def settle_outbox(session: Session) -> None:
    """Wait until no transaction holds an outbox id it has not committed (`lock_outbox`); call it before reading
    the feed. Writers arriving meanwhile wait until this transaction ends, so keep it to the read."""
    serialise(session, "outbox")


def serialise(session: Session, name: str) -> None:
    """Hold the transaction-scoped lock `name` (PostgreSQL); SQLite transactions are serialised already."""
    _advisory_xact(session, "pg_advisory_xact_lock", name)


def _advisory_xact(session: Session, function: str, name: str) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        lock = sa.text(f"SELECT {function}(hashtext(current_schema() || '.' || :name))")
        connection.execute(lock, {"name": name})


def _private_file(path: Path) -> None:
    """Make the SQLite file (and its folder, if missing) readable by the bridge's user alone.

    The database holds clientStates, delta links, subjects and mail bodies. SQLite gives its -wal and -shm files
    the main file's mode, so creating that one 0600 covers them; files an older version left wider are narrowed.
    An existing folder is left as it is (it may be shared, /tmp say): only a folder the bridge creates is 0700.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Leave BEGIN to `_sqlite_begin`: the driver's own would start transactions late and skip DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock up front: a read-then-write transaction that upgrades its lock later fails at once
    # with "database is locked" when another writer got in first, instead of waiting busy_timeout.
    # Given to the driver directly: through SQLAlchemy's execution it cost as much as a statement (about 20 µs),
    # in every transaction.
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection being begun is open
    driver.execute("BEGIN IMMEDIATE")
