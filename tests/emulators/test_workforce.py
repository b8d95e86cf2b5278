"""The workforce workforce emulator: Standard Webhooks checks, change bookkeeping, faults and its control API.

Requests are signed here by the spec's recipe, independently of both the emulator and the bridge.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from emulators.workforce import SignatureError, WorkforceReceiver, verify
from tests.conftest import OTHER_SECRET, WORKFORCE_SECRET

# The Standard Webhooks test vector (its reference libraries' tests): secret, id, timestamp, body, signature.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def change(sequence: int, mailbox: str = "adele@contoso.com", change_id: str | None = None) -> dict[str, Any]:
    return {
        "id": change_id or str(uuid.uuid4()),
        "type": "appointment.created",
        "sequence": sequence,
        "occurred_at": "2026-11-23T06:00:00Z",
        "mailbox": mailbox,
        "workforce_id": "E1001",
        "appointment": {"id": f"item-{sequence}", "template": "meeting", "free_busy": "busy"},
    }


class Sender:
    """Posts changes to the workforce as a workforce webhook sender would, with knobs to get it wrong."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def post(
        self,
        changes: list[dict[str, Any]],
        *,
        secret: str = WORKFORCE_SECRET,
        timestamp: int | None = None,
        body: bytes | None = None,
        signed_body: bytes | None = None,
        headers: dict[str, str] | None = None,
        within: float = 10.0,
    ) -> aiohttp.ClientResponse:
        body = json.dumps({"changes": changes}).encode() if body is None else body
        stamp = int(time.time()) if timestamp is None else timestamp
        message_id = changes[0]["id"] if changes else "msg"
        sent = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature(secret, message_id, stamp, body if signed_body is None else signed_body),
        }
        async with self.http.post(
            self.url, data=body, headers=sent | (headers or {}), timeout=aiohttp.ClientTimeout(total=within)
        ) as response:
            await response.read()
            return response


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sender(http: aiohttp.ClientSession, workforce: WorkforceReceiver) -> Sender:
    return Sender(http, workforce.url)


def test_verify_accepts_the_standard_webhooks_test_vector() -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}

    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_accepts_any_one_of_several_signatures() -> None:
    rotating = f"v1,{base64.b64encode(b'x' * 32).decode()} {SPEC_SIGNATURE}"
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": rotating}

    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_ignores_signatures_of_other_versions() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE.replace("v1,", "v1a,"),
    }

    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_refuses_a_timestamp_from_the_future() -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}

    with pytest.raises(SignatureError, match="from now"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP - 301)


def test_a_malformed_secret_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="base64"):
        WorkforceReceiver("whsec_not base64!")


async def test_a_signed_change_is_accepted_and_recorded(workforce: WorkforceReceiver, sender: Sender) -> None:
    sent = change(1)

    response = await sender.post([sent])

    assert response.status == 200
    assert workforce.changes == [sent]
    assert workforce.stats()["rejected"] == 0


async def test_a_signed_ping_is_accepted_counted_and_not_recorded_as_a_change(
    workforce: WorkforceReceiver, sender: Sender
) -> None:
    ping = {"id": str(uuid.uuid4()), "type": "ping", "occurred_at": "2026-11-23T06:00:00Z"}

    response = await sender.post([ping])

    assert response.status == 200
    assert (workforce.changes, workforce.anomalies, workforce.stats()["pings"]) == ([], [], 1)


async def test_a_ping_with_a_wrong_signature_is_rejected_with_401(workforce: WorkforceReceiver, sender: Sender) -> None:
    ping = {"id": str(uuid.uuid4()), "type": "ping", "occurred_at": "2026-11-23T06:00:00Z"}

    response = await sender.post([ping], secret=OTHER_SECRET)

    assert response.status == 401
    assert workforce.stats()["pings"] == 0


async def test_a_tampered_body_is_rejected_with_401(workforce: WorkforceReceiver, sender: Sender) -> None:
    genuine = json.dumps({"changes": [change(1)]}).encode()
    tampered = genuine.replace(b"busy", b"free")

    response = await sender.post([change(1)], body=tampered, signed_body=genuine)

    assert response.status == 401
    assert workforce.changes == []
    assert workforce.stats()["rejected"] == 1


async def test_a_wrong_secret_is_rejected_with_401(workforce: WorkforceReceiver, sender: Sender) -> None:
    response = await sender.post([change(1)], secret=OTHER_SECRET)

    assert response.status == 401
    assert workforce.changes == []


async def test_an_old_timestamp_is_rejected_with_401(workforce: WorkforceReceiver, sender: Sender) -> None:
    response = await sender.post([change(1)], timestamp=int(time.time()) - 600)

    assert response.status == 401
    assert "from now" in workforce.requests[0]["reason"]


async def test_missing_signature_headers_are_rejected_with_401(
    http: aiohttp.ClientSession, workforce: WorkforceReceiver
) -> None:
    async with http.post(workforce.url, json={"changes": [change(1)]}) as response:
        assert response.status == 401


async def test_a_body_without_changes_is_answered_400(workforce: WorkforceReceiver, sender: Sender) -> None:
    response = await sender.post([change(1)], body=b'{"change": {}}')

    assert response.status == 400
    assert workforce.changes == []


async def test_a_repeated_change_is_counted_as_a_duplicate_and_kept_once(
    workforce: WorkforceReceiver, sender: Sender
) -> None:
    sent = change(1)

    await sender.post([sent])
    await sender.post([sent])

    assert workforce.changes == [sent]
    assert workforce.duplicates == 1
    assert workforce.anomalies == []


async def test_a_batch_is_recorded_in_its_order(workforce: WorkforceReceiver, sender: Sender) -> None:
    batch = [change(1), change(2), change(3)]

    await sender.post(batch)

    assert [c["sequence"] for c in workforce.changes] == [1, 2, 3]
    assert workforce.requests[0]["changes"] == 3


async def test_a_skipped_sequence_is_an_anomaly(workforce: WorkforceReceiver, sender: Sender) -> None:
    await sender.post([change(1)])
    await sender.post([change(3)])

    assert workforce.anomalies == [
        {"kind": "gap", "mailbox": "adele@contoso.com", "expected": 2, "got": 3, "changeId": workforce.changes[1]["id"]}
    ]


async def test_a_sequence_going_backwards_is_an_anomaly(workforce: WorkforceReceiver, sender: Sender) -> None:
    await sender.post([change(1), change(2)])
    await sender.post([change(2)])

    assert [anomaly["kind"] for anomaly in workforce.anomalies] == ["backwards"]


async def test_sequences_are_checked_per_mailbox(workforce: WorkforceReceiver, sender: Sender) -> None:
    await sender.post([change(1, "adele@contoso.com")])
    await sender.post([change(1, "bob@contoso.com")])
    await sender.post([change(2, "adele@contoso.com")])

    assert workforce.anomalies == []
    assert workforce.stats()["lastSequence"] == {"adele@contoso.com": 2, "bob@contoso.com": 1}


async def test_a_batch_mixing_mailboxes_is_an_anomaly(workforce: WorkforceReceiver, sender: Sender) -> None:
    await sender.post([change(1, "adele@contoso.com"), change(1, "bob@contoso.com")])

    assert [anomaly["kind"] for anomaly in workforce.anomalies] == ["mixedBatch"]


async def test_failing_for_a_count_answers_that_status_then_recovers(
    workforce: WorkforceReceiver, sender: Sender
) -> None:
    workforce.fail(status=500, count=2)

    statuses = [(await sender.post([change(1)])).status for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert len(workforce.changes) == 1


async def test_failing_until_recovered(workforce: WorkforceReceiver, sender: Sender) -> None:
    workforce.fail(status=503)
    during = [(await sender.post([change(1)])).status for _ in range(3)]

    workforce.recover()
    after = (await sender.post([change(1)])).status

    assert during == [503, 503, 503]
    assert after == 200


async def test_a_slow_receiver_outlasts_a_short_client_timeout(workforce: WorkforceReceiver, sender: Sender) -> None:
    workforce.slow(500, count=1)

    with pytest.raises(TimeoutError):
        await sender.post([change(1)], within=0.1)
    response = await sender.post([change(2)])

    assert response.status == 200


async def test_requests_for_one_mailbox_in_flight_together_are_overlaps(
    workforce: WorkforceReceiver, sender: Sender
) -> None:
    workforce.slow(200)

    await asyncio.gather(sender.post([change(1)]), sender.post([change(2)]))

    assert workforce.stats()["overlaps"] == 1
    assert workforce.stats()["peakInFlight"] == 2


async def test_wait_for_returns_once_enough_changes_arrived(workforce: WorkforceReceiver, sender: Sender) -> None:
    waiting = asyncio.create_task(workforce.wait_for(2, within=5))
    await sender.post([change(1)])
    await sender.post([change(2)])

    assert [c["sequence"] for c in await waiting] == [1, 2]


async def test_wait_for_says_how_many_arrived_when_it_times_out(workforce: WorkforceReceiver, sender: Sender) -> None:
    await sender.post([change(1)])

    with pytest.raises(TimeoutError, match="1 of 2 changes"):
        await workforce.wait_for(2, within=0.1)


async def test_the_control_api_sets_a_failure_and_clears_it(
    http: aiohttp.ClientSession, workforce: WorkforceReceiver, sender: Sender
) -> None:
    async with http.put(f"{workforce.control_url}/failure", json={"status": 502, "count": 1}) as response:
        assert (await response.json())["failure"] == {"status": 502, "count": 1}
    failed = await sender.post([change(1)])
    async with http.put(f"{workforce.control_url}/failure", json={"status": 503}):
        pass
    async with http.delete(f"{workforce.control_url}/failure"):
        pass
    recovered = await sender.post([change(1)])

    assert (failed.status, recovered.status) == (502, 200)


async def test_the_control_api_sets_latency(http: aiohttp.ClientSession, workforce: WorkforceReceiver) -> None:
    async with http.put(f"{workforce.control_url}/latency", json={"ms": 250}) as response:
        assert (await response.json())["latencyMs"] == 250


async def test_the_control_api_refuses_a_bad_failure(http: aiohttp.ClientSession, workforce: WorkforceReceiver) -> None:
    async with http.put(f"{workforce.control_url}/failure", json={"status": 42}) as response:
        assert response.status == 400


async def test_the_control_api_lists_changes_per_mailbox_and_stats(
    http: aiohttp.ClientSession, workforce: WorkforceReceiver, sender: Sender
) -> None:
    await sender.post([change(1, "adele@contoso.com")])
    await sender.post([change(1, "bob@contoso.com")])

    async with http.get(f"{workforce.control_url}/changes", params={"mailbox": "Bob@Contoso.com"}) as response:
        listed = (await response.json())["value"]
    async with http.get(f"{workforce.control_url}/stats") as response:
        stats = await response.json()

    assert [c["mailbox"] for c in listed] == ["bob@contoso.com"]
    assert stats["changes"] == 2
    assert stats["byStatus"] == {"200": 2}


async def test_the_control_api_reset_forgets_everything(
    http: aiohttp.ClientSession, workforce: WorkforceReceiver, sender: Sender
) -> None:
    await sender.post([change(1)])
    workforce.fail(status=500)

    async with http.post(f"{workforce.control_url}/reset") as response:
        assert response.status == 204

    assert workforce.changes == []
    assert workforce.stats()["requests"] == 0
    assert (await sender.post([change(5)])).status == 200  # no failure left, and a fresh sequence baseline
    assert workforce.anomalies == []


async def test_it_runs_standalone(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.workforce",
        "--port",
        "0",
        "--secret",
        WORKFORCE_SECRET,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [await process.stdout.readline() for _ in range(3)]
        announced = json.loads(lines[-1])
        async with http.get(f"{announced['controlUrl']}/health") as response:
            health = await response.json()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)

    assert health["url"] == announced["url"]
    assert announced["secret"] == WORKFORCE_SECRET
    assert process.returncode == 0


async def test_a_brief_receiver_keeps_what_a_bench_reads_of_each_change(http: aiohttp.ClientSession) -> None:
    receiver = WorkforceReceiver(WORKFORCE_SECRET, brief=True)
    url = await receiver.start()
    sent = change(1)
    try:
        answer = await Sender(http, url).post([sent])
    finally:
        await receiver.stop()

    assert answer.status == 200
    assert receiver.changes == [
        {
            "id": sent["id"],
            "type": "appointment.created",
            "mailbox": "adele@contoso.com",
            "sequence": 1,
            "appointment": {"id": "item-1", "subject": None},
        }
    ]
