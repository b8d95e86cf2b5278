"""The `presence-bridge` command line, driven through `main()` with real files."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.templates import default_mapping_path
from emulators.ews import EwsEmulator
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from emulators.workforce import WorkforceReceiver
from tests.conftest import ADELE, BILLION_LAUGHS, OTHER_SECRET, WORKFORCE_SECRET, free_port, offline_config_text
from tests.emulators.ews_fixtures import ALICE, BOB, SERVICE_PASSWORD, SERVICE_USER

# The command line's usual config, with a SQLite file beside it.
CONFIG = offline_config_text(mailboxes=[ADELE], database_url="sqlite:///bridge.db", port=8080)


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


def test_templates_validate_reports_a_duplicate_key_with_every_other_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    days_ahead: 0
    show:
      busy: meeting
      oof: absence
      busy: remote
    templates:
      meeting: {show_as: busy, state_until: PT0S}
    precedence: [oof, oof]
    """
    path = write(tmp_path, text, "m.yaml")

    assert main(["templates", "validate", str(path)]) == 1

    assert capsys.readouterr().err.splitlines() == [
        f"template mapping {path} is not valid:",
        "  - m.yaml:1: days_ahead: 0 is less than the minimum of 1",
        "  - m.yaml:5: show.busy: duplicate key (first given at line 3)",
        "  - m.yaml:5: show.busy: template 'remote' is not defined under templates",
        "  - m.yaml:4: show.oof: template 'absence' is not defined under templates",
        "  - m.yaml:8: precedence[1]: 'oof' is listed twice",
        "  - m.yaml:8: precedence: shown states missing: busy",
        "  - m.yaml:7: templates.meeting.state_until: must be longer than zero",
    ]


def test_templates_show_with_a_config_shows_the_mapping_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "show: {busy: meeting}\ntemplates: {meeting: {show_as: busy}}\ndays_ahead: 14\n", "mine.yaml")
    config = write(tmp_path, "templates: mine.yaml\n" + CONFIG, "config.yaml")

    assert main(["templates", "show", "--config", str(config)]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"mapping:       {tmp_path / 'mine.yaml'} (in force for {config})\n")
    assert "days ahead:    14" in out


def test_templates_validate_with_a_config_checks_the_mapping_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "show: {busy: meeting}\ntemplates: {}\n", "mine.yaml")
    config = write(tmp_path, "templates: mine.yaml\n" + CONFIG, "config.yaml")

    assert main(["templates", "validate", "--config", str(config)]) == 1
    assert "mine.yaml:1: show.busy: template 'meeting' is not defined" in capsys.readouterr().err


def test_templates_take_a_file_or_a_config_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["templates", "show", "a.yaml", "--config", "b.yaml"])
    assert caught.value.code == 2
    assert "not allowed with argument FILE" in capsys.readouterr().err


# --- check ---------------------------------------------------------------------------------------------------


def test_check_hints_that_an_unquoted_workforce_id_was_read_as_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CONFIG.replace('workforce_id: "E1001"', "workforce_id: 0123"), "config.yaml")

    assert main(["check", "--offline", "--config", str(path)]) == 1

    assert capsys.readouterr().err == (
        f"configuration {path} is not valid:\n"
        "  - config.yaml:10: mailboxes[0].workforce_id: 0123 was read as the number 83; quote it to keep it as text:"
        " '0123'\n"
    )


def test_check_summarises_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CONFIG, "config.yaml")
    assert main(["check", "--offline", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {path}\n")
    assert f"sqlite:///{tmp_path / 'bridge.db'}" in out
    assert "online: graph, tenant 11111111-2222-3333-4444-555555555555, 1 mailbox" in out
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
    assert ["grady@contoso.com", "E2002", "online", "active", "-", "never", "sync", "pending"] in [
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


def test_the_log_level_may_also_follow_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "validate", "--log-level", "debug"]) == 0
    assert logging.getLogger("alembic").level == logging.DEBUG  # library detail shows at DEBUG only
    assert main(["templates", "validate"]) == 0
    assert logging.getLogger("alembic").level == logging.CRITICAL
    assert capsys.readouterr().out.startswith("ok: ")


def test_python_dash_m_bridge_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "templates", "validate"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"ok: {default_mapping_path()}\n")


# --- check against the emulators -----------------------------------------------------------------------------


def emulator_config(
    tmp_path: Path,
    emulator: GraphEmulator,
    app: AppRegistration,
    secret: str,
    *,
    mailboxes: tuple[str, ...] = ("AdeleV@contoso.com", "nobody@contoso.com"),
    extra: str = "",
) -> Path:
    listed = "\n".join(
        f'  - {{address: {address}, workforce_id: "E{n}", source: online}}' for n, address in enumerate(mailboxes)
    )
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
{listed}
{textwrap.dedent(extra)}"""
    return write(tmp_path, text, "config.yaml")


async def check(path: Path, *options: str) -> tuple[int, list[str], str]:
    """`presence-bridge [OPTIONS] check --config PATH` in its own process (as an operator runs it, logging set up
    by it): the exit code, the connection lines of stdout (but the database's: tests/test_cli_db.py), and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *options, "check", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(90):
        out, err = await process.communicate()
    assert process.returncode is not None
    lines = [line for line in out.decode().splitlines() if line.startswith(("ok: ", "FAILED: "))][1:]
    lines = [line for line in lines if not line.startswith("ok: database: ")]
    return process.returncode, lines, err.decode()


async def test_check_says_ok_only_for_the_mailboxes_that_passed(
    tmp_path: Path, graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser
) -> None:
    path = emulator_config(tmp_path, graph_emulator, tenant_app, tenant_app.client_secret)

    code, lines, err = await check(path)

    assert code == 1
    assert lines == [
        "ok: online: token issued; application permissions Calendars.ReadWrite granted",
        "ok: online: AdeleV@contoso.com: calendar readable",
        "FAILED: online: nobody@contoso.com: no such mailbox in the tenant (ErrorInvalidUser)",
    ]
    assert err == "check: something above must be fixed (exit 1)\n"


async def test_check_with_a_wrong_secret_prints_only_the_bridges_line(
    tmp_path: Path, graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser
) -> None:
    path = emulator_config(tmp_path, graph_emulator, tenant_app, "wrong-secret", mailboxes=("AdeleV@contoso.com",))

    code, lines, err = await check(path)

    assert code == 1
    assert lines == [
        "FAILED: online: Entra ID refused the app's credentials: AADSTS7000215: Invalid client secret provided."
        " Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a"
        f" secret added to app '{tenant_app.client_id}'. (sources.online.client_secret)"
    ]
    # azure-identity's own WARNING, with Entra's JSON answer, is for --log-level DEBUG.
    assert err == "check: something above must be fixed (exit 1)\n"


async def test_check_at_debug_level_shows_the_librarys_detail_too(
    tmp_path: Path, graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser
) -> None:
    path = emulator_config(tmp_path, graph_emulator, tenant_app, "wrong-secret", mailboxes=("AdeleV@contoso.com",))

    code, _, err = await check(path, "--log-level", "DEBUG")

    assert code == 1
    assert "WARNING azure.identity" in err
    assert "invalid_client" in err


async def test_check_names_a_missing_application_permission(
    tmp_path: Path, graph_emulator: GraphEmulator, tenant_app: AppRegistration, adele: DirectoryUser
) -> None:
    graph_emulator.grant(tenant_app.client_id, ["Calendars.Read"])
    mail = "mail: {sender: AdeleV@contoso.com}\n"
    mailboxes = (adele.user_principal_name,)
    path = emulator_config(
        tmp_path, graph_emulator, tenant_app, tenant_app.client_secret, mailboxes=mailboxes, extra=mail
    )

    code, lines, _ = await check(path)

    assert code == 1
    assert lines == [
        "ok: online: AdeleV@contoso.com: calendar readable (mail sender)",
        "FAILED: online: the app lacks the application permission Calendars.ReadWrite, Mail.Send (granted:"
        " Calendars.Read); add it in Entra ID (API permissions, Microsoft Graph, application permissions) and grant"
        " admin consent",
    ]


async def test_check_names_a_mailbox_an_application_access_policy_excludes(
    tmp_path: Path,
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    bob: DirectoryUser,
) -> None:
    graph_emulator.restrict_access(tenant_app.client_id, [adele.user_principal_name])
    mailboxes = (adele.user_principal_name, bob.user_principal_name)
    path = emulator_config(tmp_path, graph_emulator, tenant_app, tenant_app.client_secret, mailboxes=mailboxes)

    code, lines, _ = await check(path)

    assert code == 1
    assert lines[1:] == [
        "ok: online: AdeleV@contoso.com: calendar readable",
        "FAILED: online: bob@contoso.com: an application access policy keeps the app out of this mailbox (Exchange"
        " Online PowerShell: Test-ApplicationAccessPolicy; add the mailbox to the policy's group)",
    ]


def ews_source_yaml(url: str, password: str = SERVICE_PASSWORD) -> str:
    return f"""
  onprem:
    kind: ews
    service_endpoint: {url}
    username: '{SERVICE_USER}'
    password: {password}
    auth_type: basic
"""


def ews_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    text = f"sources:{ews_source_yaml(url)}mailboxes:\n  - {{address: {ALICE}, workforce_id: 'E1'}}\n{extra}"
    return write(tmp_path, text, "config.yaml")


async def test_check_with_ews_unreachable_names_the_address_and_the_setting(tmp_path: Path) -> None:
    port = free_port()
    path = ews_config(tmp_path, f"http://127.0.0.1:{port}/EWS/Exchange.asmx")

    code, lines, err = await check(path)

    assert code == 3
    assert lines == [f"FAILED: onprem: connection refused by 127.0.0.1:{port} (sources.onprem.service_endpoint)"]
    assert err == "check: could not connect to everything; try again later (exit 3)\n"


async def test_check_names_a_refused_ews_password_once(tmp_path: Path, ews: EwsEmulator) -> None:
    listed = f"  - {{address: {ALICE}, workforce_id: 'E1'}}\n  - {{address: {BOB}, workforce_id: 'E2'}}\n"
    text = f"sources:{ews_source_yaml(ews.url, 'wrong')}mailboxes:\n{listed}"

    code, lines, _ = await check(write(tmp_path, text, "config.yaml"))

    assert code == 1
    assert lines == [
        f"FAILED: onprem: the service account {SERVICE_USER} was refused by {ews.url}: a wrong password, or the"
        " account is locked out or expired (sources.onprem.password)"
    ]  # once: the other mailbox is not tried with the same refused password (an Active Directory lockout risk)


async def test_check_names_a_missing_ews_impersonation_right(tmp_path: Path, ews: EwsEmulator) -> None:
    ews.set_impersonation(SERVICE_USER, False)

    code, lines, _ = await check(ews_config(tmp_path, ews.url))

    assert code == 1
    assert lines == [
        f"FAILED: onprem: {ALICE}: {SERVICE_USER} may not impersonate this mailbox (give it the"
        " ApplicationImpersonation role, or set impersonation: false for delegate access)"
    ]


async def test_check_names_an_unknown_ews_mailbox(tmp_path: Path, ews: EwsEmulator) -> None:
    extra = "  - {address: nobody@corp.example, workforce_id: 'E2'}\n"
    text = f"sources:{ews_source_yaml(ews.url)}mailboxes:\n  - {{address: {ALICE}, workforce_id: 'E1'}}\n{extra}"

    code, lines, _ = await check(write(tmp_path, text, "config.yaml"))

    assert code == 1
    assert lines == [
        f"ok: onprem: {ALICE}: calendar readable",
        f"FAILED: onprem: nobody@corp.example: no such mailbox on {ews.url}",
    ]


def workforce_yaml(url: str, secret: str = WORKFORCE_SECRET) -> str:
    return f"workforce:\n  url: {url}\n  signing_secret: {secret}\n"


async def test_check_pings_the_workforce_endpoint_signed(
    tmp_path: Path, ews: EwsEmulator, workforce: WorkforceReceiver
) -> None:
    code, lines, err = await check(ews_config(tmp_path, ews.url, workforce_yaml(workforce.url)))

    assert (code, err) == (0, "")
    assert lines[0] == f"ok: workforce: {workforce.url} accepted a signed ping (200 OK)"
    assert workforce.stats()["pings"] == 1
    assert workforce.changes == []


async def test_check_hints_at_the_secret_when_the_workforce_endpoint_refuses_the_ping(
    tmp_path: Path, ews: EwsEmulator, workforce: WorkforceReceiver
) -> None:
    code, lines, _ = await check(ews_config(tmp_path, ews.url, workforce_yaml(workforce.url, OTHER_SECRET)))

    assert code == 1
    assert lines[0] == (
        f'FAILED: workforce: {workforce.url} answered the signed ping 401 Unauthorized: {{"error": "no v1 signature'
        ' matches the body"} (is workforce.signing_secret the secret the workforce system checks? does the endpoint'
        " or a proxy in front of it want other authentication?)"
    )


async def test_check_tells_a_failing_workforce_endpoint_from_a_configuration_error(
    tmp_path: Path, ews: EwsEmulator, workforce: WorkforceReceiver
) -> None:
    workforce.fail(status=503)

    code, lines, _ = await check(ews_config(tmp_path, ews.url, workforce_yaml(workforce.url)))

    assert code == 3
    assert lines[0].startswith(f"FAILED: workforce: {workforce.url} answered the signed ping 503 Service Unavailable")


async def test_check_offline_connects_to_nothing(tmp_path: Path, workforce: WorkforceReceiver) -> None:
    path = ews_config(tmp_path, f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx", workforce_yaml(workforce.url))

    assert await asyncio.to_thread(main, ["check", "--offline", "--config", str(path)]) == 0
    assert workforce.requests == []


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


def test_the_shipped_systemd_unit_checks_the_files_only_before_starting() -> None:
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "presence-bridge.service").read_text()
    [pre] = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre.split()[1:] == ["check", "--offline"]


def test_mailboxes_add_refuses_what_is_not_a_mail_address_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        mailboxes(tmp_path, capsys, "add", "grady", "--workforce-id", "E2002")

    assert caught.value.code == 2
    assert "argument address: 'grady' is not a mail address (name@domain)" in capsys.readouterr().err
    assert "grady" not in mailboxes(tmp_path, capsys, "list")[1]


def test_mailboxes_add_refuses_an_empty_workforce_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        mailboxes(tmp_path, capsys, "add", "grady@contoso.com", "--workforce-id", " ")

    assert caught.value.code == 2
    assert "argument --workforce-id: must not be empty" in capsys.readouterr().err


def test_check_help_documents_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 everything tested passed; 1 something to fix" in help_text
    assert "3 something could not be reached" in help_text


def test_run_with_a_missing_config_file_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "none.yaml")]) == 1
    assert capsys.readouterr().err == f"cannot read {tmp_path / 'none.yaml'}: No such file or directory\n"
