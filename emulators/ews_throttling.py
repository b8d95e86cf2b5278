"""Exchange's throttling limits per budget: requests at once, streaming connections and subscriptions.

What Exchange documents (on-premises Exchange 2013 and later; docs/emulators.md cites the pages):

- `EWSMaxConcurrency` (throttling policy, 27 by default on Exchange 2013 and later and in Exchange Online; 10 on
  Exchange 2010): EWS requests under way at once per budget, each held from its arrival until its answer is sent.
  One more answers `ErrorExceededConnectionCount` ("more concurrent requests against the server than the
  throttling policy allows") and the requests under way go on. The long-lived GetStreamingEvents connections
  have their own limit (next item) and are not counted here.

- `HangingConnectionLimit` (web.config, 3 by default on-premises; 10 in Exchange Online, not configurable): open
  GetStreamingEvents connections per budget. One more answers `ErrorExceededConnectionCount`.
- `EWSMaxSubscriptions` (throttling policy, 5,000 by default on Exchange 2013; 20 in Exchange Online): live
  (unexpired) pull, push and streaming subscriptions per budget. One more answers `ErrorExceededSubscriptionCount`.
- Whose budget: a request that impersonates a mailbox is charged to a copy of that mailbox's budget, shared by
  every service account impersonating it; a request without impersonation to the calling account's own. So a
  service account that impersonates a different anchor mailbox for each connection is not held to the
  connection limit as a whole ("Maintain affinity between a group of subscriptions and the Mailbox server",
  table 1 and the sa1 / m1 example).

The texts are the EWS Managed API's descriptions of the two codes (its `ServiceError` enumeration).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from emulators.ews_xml import EwsError, SoapFault

MAX_CONCURRENCY = 27
HANGING_CONNECTION_LIMIT = 3
MAX_SUBSCRIPTIONS = 5000


@dataclass
class Limits:
    hanging_connections: int = HANGING_CONNECTION_LIMIT
    subscriptions: int = MAX_SUBSCRIPTIONS
    concurrency: int = MAX_CONCURRENCY


@dataclass
class Concurrency:
    """The requests under way per budget, held to `limits.concurrency`; the most each budget had at once."""

    limits: Limits
    under_way: Counter[str] = field(default_factory=Counter)
    peak: dict[str, int] = field(default_factory=dict)

    def enter(self, budget: str) -> None:
        """Count a request in, or refuse it as Exchange does (a SOAP fault: the request is refused as a whole)."""
        if self.under_way[budget] >= self.limits.concurrency:
            refused = connections_exceeded()
            raise SoapFault(refused.code, refused.message)
        self.under_way[budget] += 1
        self.peak[budget] = max(self.peak.get(budget, 0), self.under_way[budget])

    def leave(self, budget: str) -> None:
        self.under_way[budget] -= 1
        if not self.under_way[budget]:
            del self.under_way[budget]


def budget(account: str, mailbox: str, *, impersonating: bool) -> str:
    """The throttling budget a request is charged to."""
    return f"impersonated:{mailbox.lower()}" if impersonating else f"account:{account.lower()}"


def connections_exceeded() -> EwsError:
    return EwsError(
        "ErrorExceededConnectionCount",
        "You have exceeded the available concurrent connections for your account. "
        "Try again once your other requests have completed.",
    )


def subscriptions_exceeded() -> EwsError:
    return EwsError(
        "ErrorExceededSubscriptionCount",
        "You have exceeded the available subscriptions for your account. "
        "Remove unnecessary subscriptions and try your request again.",
    )
