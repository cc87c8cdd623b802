"""`affnet-dev wordpress`: a throwaway WordPress with the plugin active, to try it by hand; Ctrl-C
stops it and deletes what it made."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from dev import wordpress
from server.core.settings import ROOT
from tests.conftest import _unavailable


def test_it_starts_a_wordpress_with_the_plugin_active_and_leaves_nothing_behind(tmp_path: Path) -> None:
    if wordpress.missing():
        _unavailable("Debian's " + ", ".join(wordpress.missing()))
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "dev.cli", "wordpress", "--affnet-url", "http://127.0.0.1:8000/"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # blocks until the site is up (or the command failed)
        match = re.search(r"running at (http://127\.0\.0\.1:\d+)/", first)
        assert match, first + proc.stdout.read()
        url = match.group(1)
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "administrator: admin /" in lines[0] and "author (no unfiltered_html): author /" in lines[1]
        files = Path(lines[3].split("files: ", 1)[1].split(" (", 1)[0])
        assert (files / "wordpress" / "wp-config.php").exists()
        # The plugin is active: its REST route exists, and refuses a visitor who is not signed in.
        route = httpx.get(url + "/", params={"rest_route": "/affnet/v1/slots"}, timeout=10)
        assert route.status_code == 401 and route.json()["code"] == "rest_forbidden"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert not files.exists()
