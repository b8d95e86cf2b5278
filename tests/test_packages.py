"""The bridge runs without the emulators: only `presence-bridge demo` loads them (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(statement: str) -> list[str]:
    """The emulator modules a fresh interpreter has loaded after `statement`."""
    listing = "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'emulators')))"
    probe = f"{statement}\nimport json, sys\n{listing}"
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return list(json.loads(answer.stdout.splitlines()[-1]))


def test_the_service_and_its_command_load_no_emulator() -> None:
    statement = "import bridge.cli, bridge.lifecycle, bridge.service, bridge.sources.configured, bridge.winservice"
    assert _loaded_after(statement) == []


def test_the_demo_is_where_they_load() -> None:
    assert "emulators.graph" in _loaded_after("import bridge.demo")
