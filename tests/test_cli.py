"""The `presence-bridge` command line, driven through `main()` with real files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.emulators.graph import GraphEmulator
from bridge.emulators.graph_model import AppRegistration, DirectoryUser
from bridge.templates import default_mapping_path
from tests.conftest import BILLION_LAUGHS, CLI_CONFIG

# The command line's usual config, with a SQLite file beside it.
CONFIG = CLI_CONFIG.format(url="sqlite:///bridge.db", port=8080)


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- templates -----------------------------------------------------------------------------------------------


def test_templates_validate_checks_the_shipped_mapping_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "validate"]) == 0
    assert capsys.readouterr().out == f"ok: {default_mapping_path()}\n"


def test_templates_validate_lists_the_problems_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "show: {busy: meeting, oof: absence}\ntemplates: {meeting: {show_as: busy}}\n", "m.yaml")
    assert main(["templates", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"template mapping {path} is not valid:\n")
    assert "m.yaml:1: show.oof: template 'absence' is not defined under templates" in err
    assert "Traceback" not in err


def test_templates_validate_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "validate", str(tmp_path / "none.yaml")]) == 1
    assert f"cannot read {tmp_path / 'none.yaml'}" in capsys.readouterr().err


def test_templates_validate_refuses_a_yaml_alias_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"{BILLION_LAUGHS}ignore_prefix: *i\n", "m.yaml")
    assert main(["templates", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "m.yaml: aliases (*name) expand it to more than 2 times its size" in err
    assert len(err) < 1000


def test_templates_show_prints_state_template_and_how_it_is_written(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "show"]) == 0
    out = capsys.readouterr().out
    assert "ignore prefix: '*'" in out
    assert "days ahead:    90" in out
    assert "precedence:    oof > busy > workingElsewhere > tentative" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["busy", "meeting", "busy", "no", "PT1H", "-", "-"] in lines
    assert ["oof", "absence", "oof", "yes", "end_of_day", "-", "-"] in lines
    assert ["free", "(never", "shown)"] in lines


def test_templates_show_lists_unshown_states_and_write_only_templates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    show: {busy: meeting}
    templates:
      meeting: {show_as: busy}
      training: {show_as: busy, category: Learning}
    """
    assert main(["templates", "show", str(write(tmp_path, text, "m.yaml"))]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["tentative", "(not", "shown)"] in lines
    assert ["(write", "only)", "training", "busy", "no", "end_of_day", "Learning", "-"] in lines


# --- check ---------------------------------------------------------------------------------------------------


def test_check_summarises_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CONFIG, "config.yaml")
    assert main(["check", "--offline", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {path}\n")
    assert f"sqlite:///{tmp_path / 'bridge.db'}" in out
    assert "online: graph, tenant 11111111-2222-3333-4444-555555555555, 1 mailboxes" in out
    assert "connections: not tested (--offline)" in out
    assert "graph-secret-value" not in out


def test_check_lists_every_problem_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CONFIG.replace("11111111-2222", "x").replace("adele@contoso.com", "adele"), "config.yaml")
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "sources.online.tenant_id: 'x-3333-4444-555555555555' is not a valid UUID" in err
    assert "mailboxes[0].address: 'adele' is not an email address" in err
    assert "Traceback" not in err


def test_check_reports_the_problems_of_the_configured_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "show: {busy: meeting}\ntemplates: {}\n", "mine.yaml")
    path = write(tmp_path, "templates: mine.yaml\n" + CONFIG, "config.yaml")
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mine.yaml:1: show.busy: template 'meeting' is not defined" in err
    assert "Traceback" not in err


def test_check_takes_the_config_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG, "config.yaml")
    monkeypatch.setenv("PRESENCE_BRIDGE_CONFIG", str(path))
    assert main(["check", "--offline"]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}")


def test_check_without_a_config_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESENCE_BRIDGE_CONFIG", raising=False)
    assert main(["check"]) == 1
    assert "pass --config FILE or set PRESENCE_BRIDGE_CONFIG" in capsys.readouterr().err


# --- db upgrade ----------------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database_then_finds_it_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CONFIG, "config.yaml")
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "upgraded from revision (empty) to " in capsys.readouterr().out
    assert (tmp_path / "bridge.db").is_file()
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert ": already at revision " in capsys.readouterr().out


def test_db_upgrade_reports_an_unopenable_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A missing folder is created (0700); one that cannot be, under a regular file, is reported.
    path = write(tmp_path, CONFIG.replace("sqlite:///bridge.db", "sqlite:///config.yaml/bridge.db"), "config.yaml")
    assert main(["db", "upgrade", "--config", str(path)]) == 1
    assert "cannot open the database" in capsys.readouterr().err


# --- mailboxes ---------------------------------------------------------------------------------------------


def mailboxes(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    path = tmp_path / "config.yaml"
    if not path.exists():
        write(tmp_path, CONFIG, "config.yaml")
        assert main(["db", "upgrade", "--config", str(path)]) == 0
        capsys.readouterr()
    code = main(["mailboxes", *argv, "--config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mailboxes_add_then_list_shows_it_pending_a_sync(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mailboxes(tmp_path, capsys, "add", "Grady@contoso.com", "--workforce-id", "E2002")[0] == 0
    code, out, _ = mailboxes(tmp_path, capsys, "list")
    assert code == 0
    assert ["grady@contoso.com", "E2002", "online", "active", "never", "sync", "pending"] in [
        line.split() for line in out.splitlines()
    ]


def test_mailboxes_list_includes_the_configured_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "adele@contoso.com  E1001" in mailboxes(tmp_path, capsys, "list")[1]


def test_mailboxes_add_refuses_an_active_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mailboxes(tmp_path, capsys, "add", "grady@contoso.com", "--workforce-id", "E2002")
    code, _, err = mailboxes(tmp_path, capsys, "add", "GRADY@contoso.com", "--workforce-id", "E2002")
    assert code == 1
    assert "already mirrored" in err


def test_mailboxes_disable_and_enable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mailboxes(tmp_path, capsys, "add", "grady@contoso.com", "--workforce-id", "E2002")
    assert mailboxes(tmp_path, capsys, "disable", "grady@contoso.com")[0] == 0
    assert "disabled by an administrator" in mailboxes(tmp_path, capsys, "list")[1]
    assert mailboxes(tmp_path, capsys, "enable", "grady@contoso.com")[0] == 0
    assert " active " in mailboxes(tmp_path, capsys, "list")[1]


def test_mailboxes_naming_an_unknown_mailbox_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mailboxes(tmp_path, capsys, "resync", "nobody@contoso.com")
    assert code == 1
    assert "no mailbox nobody@contoso.com" in err
    assert "Traceback" not in err


def test_mailboxes_add_with_an_unknown_source_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mailboxes(tmp_path, capsys, "add", "x@contoso.com", "--workforce-id", "E9", "--source", "nope")
    assert code == 1
    assert "--source must name a configured source" in err


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_the_log_level_is_an_option_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "debug", "templates", "validate"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_python_dash_m_bridge_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "templates", "validate"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"ok: {default_mapping_path()}\n")


# --- check against the Graph emulator ----------------------------------------------------------------------------


def emulator_config(tmp_path: Path, emulator: GraphEmulator, app: AppRegistration, secret: str) -> Path:
    text = f"""
    public_url: https://bridge.example.com
    sources:
      online:
        kind: graph
        tenant_id: {app.tenant_id}
        client_id: {app.client_id}
        client_secret: {secret}
        authority_host: {emulator.authority}
        graph_url: {emulator.graph_url}
        ca_file: {emulator.ca_file}
    mailboxes:
      - {{address: AdeleV@contoso.com, workforce_id: "E1001"}}
      - {{address: nobody@contoso.com, workforce_id: "E1002"}}
    """
    return write(tmp_path, text, "config.yaml")


async def test_check_tests_each_mailbox_through_the_source(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
) -> None:
    path = emulator_config(tmp_path, graph_emulator, tenant_app, tenant_app.client_secret)

    code = await asyncio.to_thread(main, ["check", "--config", str(path)])

    out = capsys.readouterr().out
    assert code == 1
    assert "online: FAILED" in out
    assert "nobody@contoso.com" in out
    assert "AdeleV@contoso.com" not in out.split("problem:")[1]


async def test_check_names_refused_credentials(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
) -> None:
    path = emulator_config(tmp_path, graph_emulator, tenant_app, "wrong-secret")

    assert await asyncio.to_thread(main, ["check", "--config", str(path)]) == 1
    assert "credentials were refused" in capsys.readouterr().out


def test_mailboxes_import_dry_run_lists_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roster = write(tmp_path, "address,workforce id\ngrady@contoso.com,E2002\nhenry@contoso.com,E2003\n", "team.csv")

    code, out, _ = mailboxes(tmp_path, capsys, "import", str(roster), "--dry-run")

    assert code == 0
    assert out.splitlines() == [
        "add    grady@contoso.com  E2002  online",
        "add    henry@contoso.com  E2003  online",
        "2 would be added, 0 re-enabled, 0 updated; 0 unchanged",
    ]
    assert "grady@contoso.com" not in mailboxes(tmp_path, capsys, "list")[1]


def test_mailboxes_import_enrols_the_roster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roster = write(tmp_path, "adele@contoso.com,E1001\ngrady@contoso.com,E2002\n", "team.csv")

    code, out, _ = mailboxes(tmp_path, capsys, "import", str(roster))

    assert code == 0
    assert out.splitlines()[-1] == "1 were added, 0 re-enabled, 0 updated; 1 unchanged"
    listed = [line.split()[:4] for line in mailboxes(tmp_path, capsys, "list")[1].splitlines()]
    assert ["grady@contoso.com", "E2002", "online", "active"] in listed


def test_mailboxes_import_refuses_a_roster_with_problems_and_names_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = write(tmp_path, "grady@contoso.com,E1001\nhenry,E2003\n", "team.csv")

    code, _, err = mailboxes(tmp_path, capsys, "import", str(roster))

    assert code == 1
    assert "line 1: workforce id 'E1001' belongs to the active mailbox adele@contoso.com" in err
    assert "line 2: 'henry' is not a mail address" in err
    assert "grady@contoso.com" not in mailboxes(tmp_path, capsys, "list")[1]


def test_mailboxes_import_names_a_file_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mailboxes(tmp_path, capsys, "import", str(tmp_path / "missing.csv"))

    assert code == 1
    assert "cannot read the roster" in err


def test_mailboxes_add_refuses_a_workforce_id_another_mailbox_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = mailboxes(tmp_path, capsys, "add", "grady@contoso.com", "--workforce-id", "E1001")

    assert code == 1
    assert "workforce id 'E1001' belongs to the active mailbox adele@contoso.com" in err
