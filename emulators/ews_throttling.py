"""Exchange's throttling limits on notifications: streaming connections and subscriptions per budget.

What Exchange documents (on-premises Exchange 2013 and later; docs/emulators.md cites the pages):

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

from dataclasses import dataclass

from emulators.ews_xml import EwsError

HANGING_CONNECTION_LIMIT = 3
MAX_SUBSCRIPTIONS = 5000


@dataclass
class NotificationLimits:
    hanging_connections: int = HANGING_CONNECTION_LIMIT
    subscriptions: int = MAX_SUBSCRIPTIONS


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
