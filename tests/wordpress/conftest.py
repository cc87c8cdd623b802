"""A real WordPress for the plugin's tests: Debian's WordPress 6.1, MariaDB and Apache + mod_php on
loopback (dev/wordpress.py), one per test module. scripts/test-prereqs.sh installs the packages in CI;
elsewhere the tests that need them are skipped with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dev import wordpress
from tests.conftest import _unavailable
from tests.e2e.conftest import browser, chromium_path, live_server  # noqa: F401 - the journey's affnet and Chromium


@pytest.fixture(scope="module")
def wordpress_site() -> Iterator[wordpress.WordPressSite]:
    gone = wordpress.missing()
    if gone:
        _unavailable("Debian's " + ", ".join(gone))
    site = wordpress.start()
    try:
        yield site
    finally:
        # Shown by pytest only when a test failed: what Apache, PHP and MariaDB said meanwhile.
        print(site.error_log())
        site.stop()
