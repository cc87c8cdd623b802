#!/usr/bin/env bash
# The WordPress plugin as the zip a blogger uploads (Plugins → Add New → Upload Plugin):
# dist/affnet-wordpress.zip, built by server/ads/wordpress.py (plugin files plus compiled .mo).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
mkdir -p dist
"$PY" - <<'PYTHON'
from pathlib import Path

from server.ads.wordpress import plugin_zip

target = Path("dist/affnet-wordpress.zip")
target.write_bytes(plugin_zip())
print(f"{target} ({target.stat().st_size} bytes)")
PYTHON
