"""Migrations only when asked: `db upgrade` and `run` migrate, every other command reads the database as it is
(docs/storage.md), on SQLite and PostgreSQL."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.cli import main
from bridge.store import Database
from tests.conftest import DatabaseUrl, cli_url, free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def revision(database_url: DatabaseUrl) -> str | None:
    database = Database(database_url.url, schema=database_url.schema)
    try:
        return database.current_revision()
    finally:
        database.close()


def set_revision(database_url: DatabaseUrl, value: str) -> None:
    database = Database(database_url.url, schema=database_url.schema)
    try:
        with database.engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": value})
    finally:
        database.close()


def upgrade_to(database_url: DatabaseUrl, target: str) -> None:
    from alembic import command

    database = Database(database_url.url, schema=database_url.schema)
    try:
        config = database._alembic_config()
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, target)
    finally:
        database.close()


def test_mailboxes_list_leaves_an_older_database_as_it_is_and_says_how_to_upgrade(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    upgrade_to(database_url, "0001")

    code, _, err = run(capsys, "mailboxes", "list", "--config", str(cli_config))

    assert code == 1
    assert "is at revision 0001" in err
    assert f"presence-bridge db upgrade --config {cli_config}" in err
    assert "Traceback" not in err
    assert revision(database_url) == "0001"


def test_mailboxes_list_on_an_empty_database_creates_nothing(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "mailboxes", "list", "--config", str(cli_config))

    assert code == 1
    assert "is empty" in err
    assert revision(database_url) is None


def test_db_status_lists_the_pending_revisions_then_none_after_upgrade(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    upgrade_to(database_url, "0001")
    head = Database(database_url.url, schema=database_url.schema).head_revision()

    code, out, err = run(capsys, "db", "status", "--config", str(cli_config))

    assert code == 1
    assert "current:  0001" in out
    assert f"head:     {head}" in out
    assert "pending:  0002" in out
    assert "db upgrade" in err
    assert run(capsys, "db", "upgrade", "--config", str(cli_config))[0] == 0
    code, out, _ = run(capsys, "db", "status", "--config", str(cli_config))
    assert code == 0
    assert "pending:  none" in out


def test_a_database_newer_than_the_code_refuses_to_start(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "upgrade", "--config", str(cli_config))[0] == 0
    head = Database(database_url.url, schema=database_url.schema).head_revision()
    set_revision(database_url, "0099_future")

    for argv in (["run"], ["db", "upgrade"], ["mailboxes", "list"]):
        code, _, err = run(capsys, *argv, "--config", str(cli_config))
        assert code == 1, argv
        assert f"database is at revision 0099_future; this version knows up to {head}" in err
        assert "Traceback" not in err
    assert revision(database_url) == "0099_future"


def test_check_reports_the_migration_state(
    cli_config: Path, database_url: DatabaseUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.store.check import check_database

    url = cli_url(database_url)
    before = check_database(url)
    # A SQLite file the first run creates is no fault; an empty PostgreSQL schema is one to upgrade.
    assert before.missing if database_url.schema is None else not before.ok
    assert run(capsys, "db", "upgrade", "--config", str(cli_config))[0] == 0

    report = check_database(url)

    assert report.ok
    assert "(current)" in report.summary
    set_revision(database_url, "0001")
    behind = check_database(url, upgrade="UPGRADE")
    assert (behind.connected, behind.ok) == (True, False)
    assert "0002" in behind.summary
    assert behind.problems == ("run `UPGRADE`",)


# `check` also tests the sources: an on-premises one on a closed loopback port keeps everything on this machine.
CHECK_CONFIG = """
database_url: {url}
sources:
  onprem:
    kind: ews
    service_endpoint: http://127.0.0.1:{port}/EWS/Exchange.asmx
    username: svc
    password: ews-password-value
"""


def check_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(CHECK_CONFIG.format(url=url, port=free_port())).lstrip())
    return path


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test", "Connection refused"),
        ("postgresql://postgres:s3cret-pw@127.0.0.1:5432/no_such_database_here", 'database "no_such_database_here"'),
    ],
)
def test_check_names_a_database_connection_failure_without_its_password(
    url: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = check_config(tmp_path, url.format(port=free_port()))

    code, out, _ = run(capsys, "check", "--config", str(path))

    assert code == 3  # unreachable: may pass later (docs/running.md, exit codes)
    assert "FAILED: database: database_url postgresql://postgres:***@127.0.0.1" in out
    assert said in out
    assert "s3cret-pw" not in out


def test_check_says_a_missing_sqlite_file_is_created_by_the_first_run_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = check_config(tmp_path, "sqlite:///bridge.db")

    code, out, _ = run(capsys, "check", "--config", str(path))

    assert code == 0
    assert "ok: database: " in out
    assert "not created yet: `presence-bridge run`" in out
    assert not (tmp_path / "bridge.db").exists()
