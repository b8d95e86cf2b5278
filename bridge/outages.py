"""Log a failure once when it starts and once when it ends, however often it is retried in between.

A bridge watching hundreds of mailboxes retries constantly while Exchange or the workforce system is down;
logging every attempt would bury the one line an administrator needs (Home Assistant's update coordinator
does the same).
"""

from __future__ import annotations

import logging


class Outages:
    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._failing: dict[str, str] = {}

    def failed(self, key: str, message: str) -> None:
        """Log `message` if `key` was working, or if what is wrong with it changed."""
        if self._failing.get(key) != message:
            self._log.warning("%s", message)
        self._failing[key] = message

    def recovered(self, key: str, message: str) -> None:
        if self._failing.pop(key, None) is not None:
            self._log.info("%s", message)

    def failing(self, key: str) -> bool:
        return key in self._failing
