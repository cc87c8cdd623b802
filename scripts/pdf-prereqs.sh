#!/usr/bin/env bash
# WeasyPrint (the documents' PDFs, server/invoicing/render.py) needs Pango and a font at runtime:
# install Debian's libpango-1.0-0, libpangoft2-1.0-0 and fonts-dejavu-core when one is missing.
# Called by scripts/bootstrap.sh (`make run`, `make install`) and scripts/test-prereqs.sh (`make test`).
set -euo pipefail

packages=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "pdf-prereqs: not a Debian system: install Pango (with PangoFT2) and a font such as DejaVu Sans for PDFs." >&2
  exit 0
fi
need=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    need+=("$package")
  fi
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if [ "$(id -u)" != "0" ] && [ -z "$sudo" ]; then
  echo "pdf-prereqs: cannot install ${need[*]} (not root, no sudo): documents' PDFs cannot be rendered until" >&2
  echo "    sudo apt-get install ${need[*]}" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "pdf-prereqs: installing ${need[*]} (for the documents' PDFs)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
