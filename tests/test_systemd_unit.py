"""The shipped systemd unit: valid, hardened to 2.5 or better, and giving the bridge every secret it may read."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import EwsSourceConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "presence-bridge.service"
RUNNING = ROOT / "docs" / "running.md"
INSTALLED_AT = "/opt/presence-bridge/bin/presence-bridge"
MOST_EXPOSED = 2.5

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is missing (Debian's systemd package; .ci/run installs it)"
)


def _settings(name: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", UNIT.read_text(encoding="utf-8"), flags=re.MULTILINE)


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart= pointing at this checkout's command, which `verify` requires to exist."""
    command = Path(sys.executable).with_name("presence-bridge")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_AT, str(command)), encoding="utf-8")
    return unit


@needs_analyze
def test_the_unit_verifies(unit_here: Path) -> None:
    assert analyze is not None
    result = subprocess.run([analyze, "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "presence-bridge.service" not in result.stderr, result.stderr  # no warning about the unit either


@needs_analyze
def test_the_unit_is_rated_at_most_2_5_exposed(unit_here: Path) -> None:
    assert analyze is not None
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit_here)], capture_output=True, text=True, timeout=60
    )
    rating = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert rating is not None, result.stdout + result.stderr
    assert float(rating[1]) <= MOST_EXPOSED, result.stdout


def test_the_bridge_tells_systemd_when_it_is_ready_and_alive() -> None:
    assert _settings("Type") == ["notify"]
    assert _settings("WatchdogSec")
    assert _settings("UMask") == ["0077"]
    assert _settings("StateDirectory") == ["presence-bridge"]


def test_every_credential_the_documented_config_reads_is_loaded() -> None:
    loaded = set(_settings("LoadCredential"))
    read = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY:-/etc/credstore\}/([\w.-]+)", _documented_config()))
    assert read, "docs/running.md shows no config reading a credential"
    assert read <= loaded
    secrets = {"graph-secret", "graph-certificate", "ews-password", "database-url", "signing-secret"}
    assert {f"presence-bridge.{name}" for name in secrets} <= loaded
    assert any(name.startswith("presence-bridge.api-token-") for name in loaded)


def _documented_config() -> str:
    text = RUNNING.read_text(encoding="utf-8")
    start = text.index("# /etc/presence-bridge/config.yaml")
    return text[start : text.index("```", start)]


def test_the_documented_config_works_in_an_admins_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CREDENTIALS_DIRECTORY (a root shell), every secret is read from the credential store itself."""
    store, state = tmp_path / "credstore", tmp_path / "state"
    store.mkdir()
    state.mkdir()
    loaded = {name.removeprefix("presence-bridge.") for name in _settings("LoadCredential")}
    for name in loaded:
        (store / f"presence-bridge.{name}").write_text(f"{name}-from-the-store-0123456789\n")
    signing = "whsec_" + base64.b64encode(bytes(32)).decode()
    (store / "presence-bridge.signing-secret").write_text(signing)
    shutil.copy(ROOT / "templates_map" / "default.yaml", state / "templates.yaml")
    config_file = tmp_path / "config.yaml"
    text = _documented_config().replace("/etc/credstore", str(store)).replace("/var/lib/presence-bridge", str(state))
    config_file.write_text(text, encoding="utf-8")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    config = load_config(config_file)

    assert config.workforce.signing_secret == signing
    onprem = config.sources["onprem"]
    assert isinstance(onprem, EwsSourceConfig)
    assert onprem.password == "ews-password-from-the-store-0123456789"
    assert config.database_url == f"sqlite:///{state / 'presence-bridge.db'}"
