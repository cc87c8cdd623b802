"""`affnet-dev dev` keeps every process running: one that exits is started again with backoff (dev/services.py:
Child), and the others are left alone. Real processes, no mocks."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dev.services import Child


def _python(code: str):
    return lambda: subprocess.Popen([sys.executable, "-c", code])  # noqa: S603


def test_a_child_that_exits_is_restarted_with_growing_delays_and_the_others_keep_running(monkeypatch):
    monkeypatch.setattr(Child, "FIRST_DELAY", 0.2)
    lines: list[str] = []
    crashing = Child("worker", _python("import sys; sys.exit(3)"))
    steady = Child("web server", _python("import time; time.sleep(120)"))
    steady_pid = steady.proc.pid
    try:
        deadline = time.monotonic() + 30
        while crashing.restarts < 3 and time.monotonic() < deadline:
            for child in (crashing, steady):
                child.tend(time.monotonic(), lines.append)
            time.sleep(0.05)
        assert crashing.restarts >= 3, lines
        assert steady.exit_code() is None and steady.proc.pid == steady_pid and steady.restarts == 0
        exits = [line for line in lines if line.startswith("worker exited with code 3; restarting it in")]
        delays = [float(line.rsplit(" in ", 1)[1].removesuffix(" s")) for line in exits]
        assert delays == sorted(delays) and delays[-1] > delays[0], lines  # backoff, not a tight loop
        assert "worker restarted" in lines
    finally:
        for child in (crashing, steady):
            child.stop()
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.proc.kill()


def test_a_child_that_ran_a_minute_starts_its_backoff_again(monkeypatch):
    monkeypatch.setattr(Child, "FIRST_DELAY", 0.2)
    child = Child("worker", _python("import sys; sys.exit(1)"))
    child.proc.wait(timeout=30)
    child.delay = Child.MAX_DELAY  # as after many quick deaths
    child.started_at = time.monotonic() - Child.STEADY_AFTER - 1  # but this run lasted over a minute
    now = time.monotonic()
    child.tend(now, lambda line: None)
    assert child.restart_at is not None and child.restart_at - now == pytest.approx(Child.FIRST_DELAY)
