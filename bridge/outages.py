"""Log a failure once when it starts and once when it ends, however often it is retried in between.

A bridge watching hundreds of mailboxes retries constantly while Exchange or the workforce system is down;
logging every attempt would bury the one line an administrator needs (Home Assistant's update coordinator
does the same). An unexpected exception (a bug, or an answer nobody foresaw) is logged with its traceback the
first time that error is seen, and as one line after that.
"""

from __future__ import annotations

import logging

# Distinct unexpected errors remembered for their traceback; past this many, tracebacks are not repeated anyway.
_REMEMBERED = 1000


class Outages:
    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._failing: dict[str, str] = {}
        self._traced: set[tuple[str, str]] = set()

    def failed(self, key: str, message: str) -> None:
        """Log `message` if `key` was working, or if what is wrong with it changed."""
        if self._failing.get(key) != message:
            self._log.warning("%s", message)
        self._failing[key] = message

    def unexpected(self, key: str, message: str, error: BaseException) -> None:
        """Like `failed`, with the traceback the first time this error (type and text) is seen."""
        distinct = (type(error).__name__, str(error))
        if distinct in self._traced or len(self._traced) >= _REMEMBERED:
            self.failed(key, message)
            return
        self._traced.add(distinct)
        self._failing[key] = message
        self._log.error("%s", message, exc_info=error)

    def recovered(self, key: str, message: str) -> None:
        if self._failing.pop(key, None) is not None:
            self._log.info("%s", message)

    def failing(self, key: str) -> bool:
        return key in self._failing
