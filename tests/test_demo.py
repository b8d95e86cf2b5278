"""`presence-bridge demo` runs the whole chain with nothing configured."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.demo import run_demo


def state_folder(lines: list[str]) -> Path:
    [line] = [line for line in lines if line.lstrip().startswith("state ")]
    return Path(line.split()[1])


async def test_the_demo_shows_mapped_changes_as_they_arrive() -> None:
    lines: list[str] = []

    changes = await run_demo(duration_s=6, change_every_s=1.0, out=lines.append)

    subjects = {change["appointment"].get("subject") for change in changes}
    templates = {change["appointment"]["template"] for change in changes}
    assert {"Customer visit", "Daily stand-up", "Vacation", "Maybe: workshop", "Home office"} <= subjects
    assert {"Plant tour", "Trade fair"} <= subjects  # from the on-premises mailbox, through EWS
    assert {c["workforce_id"] for c in changes if c["appointment"].get("subject") == "Trade fair"} == {"E1004"}
    assert None in subjects  # the private appointment, without its subject
    assert not any(subject and subject.lstrip().startswith("*") for subject in subjects)
    assert "Focus time" not in subjects  # free is never shown
    assert {"meeting", "absence", "tentative", "remote"} <= templates
    assert any(line.startswith("  -- ") for line in lines)  # people kept changing their calendars
    assert any(line.startswith("  metrics        http://127.0.0.1:") for line in lines)
    assert any(line.startswith("  status         presence-bridge status --config ") for line in lines)
    assert sum(line.startswith("  #") for line in lines) == len(changes)
    # Every time says its zone; what is not shown is said to be hidden, and why.
    assert all(re.search(r"\d\d:\d\d-\d\d:\d\d UTC |all day ", line) for line in lines if line.startswith("  #"))
    assert any(re.fullmatch(r'  hidden \(ignore character\): adelev@contoso\.com .* UTC "\*Dentist"', x) for x in lines)
    assert any(line.startswith("  hidden (free: never shown): leeg@contoso.com ") for line in lines)


async def test_the_demo_prints_what_an_administrator_can_open() -> None:
    lines: list[str] = []

    await run_demo(duration_s=0, out=lines.append)

    [bridge] = [line.split()[1] for line in lines if line.startswith("Bridge ")]
    text = "\n".join(lines)
    for url in ("/admin/", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/changes?after=0"):
        assert bridge + url in text
    folder = state_folder(lines)
    assert f"presence-bridge status --config {folder / 'config.yaml'}" in text


async def started_demo(lines: list[str]) -> asyncio.Task[list[dict[str, Any]]]:
    """The demo, running until cancelled, once it has printed what can be opened (into `lines`)."""
    running = asyncio.Event()

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("Changes as"):
            running.set()

    demo = asyncio.create_task(run_demo(out=out))
    async with asyncio.timeout(60):
        await running.wait()
    return demo


async def test_the_demos_admin_page_opens_with_the_token_it_prints() -> None:
    lines: list[str] = []
    demo = await started_demo(lines)
    try:
        [line] = [line for line in lines if line.lstrip().startswith("admin page ")]
        page, token = line.split()[2], line.split()[-1].rstrip(")")
        # unsafe: the jar keeps cookies from an IP address (the demo listens on 127.0.0.1), as browsers do.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            form = await (await client.get(page)).text()  # the sign-in form
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert csrf is not None
            answer = await client.post(f"{page}sign-in", data={"csrf_token": csrf[1], "token": token})
            assert answer.status == 200
            assert "<h1>Overview</h1>" in await answer.text()
    finally:
        demo.cancel()
        await asyncio.gather(demo, return_exceptions=True)


async def test_the_demo_removes_its_folder_with_the_plain_secrets_when_it_ends() -> None:
    lines: list[str] = []

    await run_demo(duration_s=0, out=lines.append)

    assert not state_folder(lines).exists()


async def test_the_demo_removes_its_folder_when_cancelled() -> None:
    lines: list[str] = []
    demo = await started_demo(lines)
    folder = state_folder(lines)
    assert (folder / "config.yaml").is_file()

    demo.cancel()
    await asyncio.gather(demo, return_exceptions=True)

    assert not folder.exists()


def _as_from_a_shell() -> None:
    # A child inherits ignored signals and the blocked-signal mask: a test runner's worker may hold SIGINT either
    # way, and the demo would then never hear the Ctrl-C sent to it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


async def test_ctrl_c_ends_the_demo_quietly_and_removes_its_folder() -> None:
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set()))
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=_as_from_a_shell,
    )  # fmt: skip
    assert demo.stdout is not None
    assert demo.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while not lines or not lines[-1].startswith("Changes as"):
            lines.append((await demo.stdout.readline()).decode().rstrip("\n"))

    # Read to the end meanwhile: a demo that wrote more than a pipe holds would otherwise wait for the reader.
    said = asyncio.ensure_future(demo.stderr.read())
    demo.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            await demo.wait()
    except TimeoutError:
        demo.kill()
        await demo.wait()
        pytest.fail(
            f"the demo did not end within 30 s of Ctrl-C (SIGINT here: {inherited}); its stderr:\n"
            f"{(await said).decode()[-4000:]}"
        )

    stderr = (await said).decode()
    assert demo.returncode == 0, stderr[-4000:]
    assert "Traceback" not in stderr
    assert not state_folder(lines).exists()
