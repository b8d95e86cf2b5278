"""calendarView delta: the sync states Graph hides behind `$deltatoken`, and the pages of one round.

A delta token is an immutable sync state: the window (fixed at the first round, as in Graph) and the change
key of every instance the client has been given. Presenting it again gives the changes since it was issued,
as often as the client likes, so a client that crashed before saving the next token can replay safely. A round's
pages are computed when the round starts and handed out through `$skiptoken`s, which are just as reusable (a
page can be fetched again after a timeout). Both are kept per user up to a bound; a token that fell out of it, or
that the fault injector expired, is answered like an expired Graph sync state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from emulators.graph_common import GraphError, random_token
from emulators.graph_events import Instance, Mailbox

SYNC_STATE_NOT_FOUND = "SyncStateNotFound"
SYNC_STATE_MESSAGE = "The sync state generation is not found."


@dataclass(frozen=True)
class SyncState:
    """What the client holding a delta token has seen."""

    user_id: str
    low: datetime
    high: datetime
    seen: Mapping[str, str]
    deletion_seq: int


@dataclass(frozen=True)
class Round:
    """One delta answer: instances to send (in full or as stubs) and ids of removed ones, then a new token."""

    user_id: str
    items: tuple[Instance | str, ...]
    delta_token: str


@dataclass(frozen=True)
class Page:
    items: tuple[Instance | str, ...]
    skip_token: str | None
    delta_token: str | None


class DeltaStates:
    def __init__(self, *, keep_per_user: int = 64, expired_status: int = 410) -> None:
        self.expired_status = expired_status
        self._keep = keep_per_user
        self._states: dict[str, SyncState] = {}
        self._rounds: dict[str, Round] = {}
        self._skips: dict[str, tuple[str, int]] = {}
        self._expired: dict[str, int] = {}
        self._recent_states: dict[str, deque[str]] = {}
        self._recent_rounds: dict[str, deque[str]] = {}

    def first_round(self, mailbox: Mailbox, low: datetime, high: datetime) -> str:
        """Every instance in the window; series masters are never sent (their occurrences are)."""
        current = mailbox.instances(low, high)
        state = SyncState(mailbox.owner.id, low, high, _seen(current), mailbox.deletion_seq)
        return self._new_round(mailbox.owner.id, tuple(current), state)

    def next_round(self, mailbox: Mailbox, delta_token: str) -> str:
        """What changed since `delta_token`: new or changed instances, and `@removed` ids."""
        state = self._states.get(delta_token)
        if state is None or state.user_id != mailbox.owner.id:
            raise self._not_found(delta_token)
        current = mailbox.instances(state.low, state.high)
        seen = _seen(current)
        changed: list[Instance | str] = [item for item in current if state.seen.get(item.id) != item.change_key]
        removed = [item_id for item_id in state.seen if item_id not in seen]
        # Graph also reports events deleted outside the window; the client ignores the ones it never had.
        gone = set(removed)
        for item_id in mailbox.deleted_since(state.deletion_seq):
            if item_id not in gone and item_id not in seen:
                gone.add(item_id)
                removed.append(item_id)
        after = SyncState(state.user_id, state.low, state.high, seen, mailbox.deletion_seq)
        return self._new_round(state.user_id, (*changed, *removed), after)

    def page(self, round_id: str, offset: int, size: int) -> Page:
        round_ = self._rounds.get(round_id)
        if round_ is None:
            raise self._not_found(round_id)
        items = round_.items[offset : offset + size]
        if offset + size < len(round_.items):
            return Page(items, self.skip_token(round_id, offset + size), None)
        return Page(items, None, round_.delta_token)

    def skip_token(self, round_id: str, offset: int) -> str:
        # A fresh token each time, even for the same position: a client that guards against nextLink loops must
        # still be able to follow a run of empty pages.
        token = random_token()
        self._skips[token] = (round_id, offset)
        return token

    def resolve_skip(self, skip_token: str) -> tuple[str, int]:
        found = self._skips.get(skip_token)
        if found is None or found[0] not in self._rounds:
            raise self._not_found(skip_token)
        return found

    def expire(self, user_id: str, status: int | None = None) -> int:
        """Forget every token and page of `user_id`; using one answers `status` (410 or 400) SyncStateNotFound."""
        answer = status or self.expired_status
        states = [token for token, state in self._states.items() if state.user_id == user_id]
        rounds = [round_id for round_id, round_ in self._rounds.items() if round_.user_id == user_id]
        for token in states:
            del self._states[token]
            self._expired[token] = answer
        for round_id in rounds:
            del self._rounds[round_id]
            self._expired[round_id] = answer
        for skip, (round_id, _) in list(self._skips.items()):
            if round_id in rounds:
                del self._skips[skip]
                self._expired[skip] = answer
        self._recent_states.pop(user_id, None)
        self._recent_rounds.pop(user_id, None)
        return len(states)

    def clear(self) -> None:
        self._states.clear()
        self._rounds.clear()
        self._skips.clear()
        self._expired.clear()
        self._recent_states.clear()
        self._recent_rounds.clear()

    def _new_round(self, user_id: str, items: tuple[Instance | str, ...], state: SyncState) -> str:
        delta_token = random_token(24)
        self._states[delta_token] = state
        for old in self._remember(self._recent_states, user_id, delta_token):
            self._states.pop(old, None)
        round_id = random_token()
        self._rounds[round_id] = Round(user_id, items, delta_token)
        evicted = set(self._remember(self._recent_rounds, user_id, round_id))
        for old in evicted:
            self._rounds.pop(old, None)
        if evicted:
            for skip, (owner, _) in list(self._skips.items()):
                if owner in evicted:
                    del self._skips[skip]
        return round_id

    def _remember(self, recent: dict[str, deque[str]], user_id: str, key: str) -> list[str]:
        """Note `key` as the user's newest; return the keys that fell out of the bound."""
        queue = recent.setdefault(user_id, deque())
        queue.append(key)
        evicted = []
        while len(queue) > self._keep:
            evicted.append(queue.popleft())
        return evicted

    def _not_found(self, token: str) -> GraphError:
        status = self._expired.get(token, self.expired_status)
        return GraphError(status, SYNC_STATE_NOT_FOUND, SYNC_STATE_MESSAGE)


def _seen(instances: list[Instance]) -> dict[str, str]:
    return {instance.id: instance.change_key for instance in instances}
