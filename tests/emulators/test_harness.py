"""The harness's process figures (/proc), which the benchmarks report beside their timings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulators.harness import cpu_seconds, cpu_seconds_named, machine_idle_seconds, resident_kb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")


def test_cpu_seconds_count_a_busy_process_s_work_and_not_a_sleeping_one_s() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.3)  # both have started
        busy_before, idle_before = cpu_seconds(busy.pid), cpu_seconds(idle.pid)
        time.sleep(1.0)
        assert cpu_seconds(busy.pid) - busy_before >= 0.2  # a loaded 2-core machine still gives it a share
        assert cpu_seconds(idle.pid) - idle_before <= 0.05
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


def test_resident_memory_grows_with_what_a_process_holds_and_its_peak_stays() -> None:
    before, _ = resident_kb(os.getpid())
    held = bytearray(64 * 2**20)
    for offset in range(0, len(held), 4096):
        held[offset] = 1  # touched pages are resident
    during, peak = resident_kb(os.getpid())
    assert during - before >= 60 * 1024
    del held
    after, peak_after = resident_kb(os.getpid())
    assert peak >= during
    # The kernel's counts lag by a few pages per thread: within 1 MB, the peak stays where the 64 MB took it.
    assert peak_after >= during - 1024 > after


def test_cpu_of_processes_by_name_adds_up_the_named_ones_only() -> None:
    assert cpu_seconds_named("no-such-process-name") == 0.0
    name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert cpu_seconds_named(name) >= cpu_seconds(os.getpid())


def test_machine_idle_seconds_only_grow() -> None:
    first = machine_idle_seconds()
    time.sleep(0.2)
    assert machine_idle_seconds() >= first > 0
