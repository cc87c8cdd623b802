"""This process as operators find it: `host:pid`, as its log lines carry the pid. The click counter's
per-process tally, a payout line's `worker` and a cron lock's holder all name it so."""

from __future__ import annotations

import os
import socket


def name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
