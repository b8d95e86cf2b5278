"""The outbox's rows as `add_changes` writes them, on both backends."""

from __future__ import annotations

import time
import uuid

from bridge.store.outbox import change_ids


def test_change_ids_are_uuids_in_the_order_they_were_made() -> None:
    first = change_ids(3)
    time.sleep(0.002)  # the next millisecond
    later = change_ids(2)

    ids = first + later
    assert len(set(ids)) == 5
    assert all(uuid.UUID(value).version == 7 and uuid.UUID(value).variant == uuid.RFC_4122 for value in ids)
    assert all(str(uuid.UUID(value)) == value for value in ids)  # the canonical form, as before
    assert max(first) < min(later)
