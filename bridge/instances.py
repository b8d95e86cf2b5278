"""Naming a running bridge instance.

Several instances may share one PostgreSQL database, also on one host (docs/running.md "Several instances").
Each names itself `host:pid:random` when it starts: the host and process id say where to look for it, the random
part keeps apart instances that share a host name and process id (containers: each one's first process has pid 1
and may share the host's name). Leases and commands are held under this name, and on PostgreSQL it is the
application name of every connection the instance opens, which is how the others see that it is still there.
"""

from __future__ import annotations

import os
import secrets
import socket


def instance_name() -> str:
    """A name for this process that no other instance, running or past, has."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
