"""URLs as logs and command output may show them: with every password they carry replaced by `***`."""

from __future__ import annotations

import re

# The userinfo password (`user:PASSWORD@`) and query parameters that carry one (`?password=`, libpq's spelling).
_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd|secret|token)=)[^&#]*", re.IGNORECASE)


def url_shown(url: str) -> str:
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))
