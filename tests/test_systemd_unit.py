"""The shipped systemd unit: valid, hardened to 2.5 or better, and giving the bridge every secret it may read."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    read = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY:-/etc/credstore\}/([\w.-]+)", RUNNING.read_text("utf-8")))
    assert read, "docs/running.md shows no config reading a credential"
    assert read <= loaded
    secrets = {"graph-secret", "graph-certificate", "ews-password", "database-url", "signing-secret"}
    assert {f"presence-bridge.{name}" for name in secrets} <= loaded
    assert any(name.startswith("presence-bridge.api-token-") for name in loaded)
