#!/usr/bin/env bash
# Install the system packages the tests need, from Debian's packages.
#  - always: Chromium, for the browser journeys (Playwright drives /usr/bin/chromium), and Pango for
#    WeasyPrint (scripts/pdf-prereqs.sh);
#  - with CI=true: PostgreSQL and Redis as well, so both engines are tested.
# The tests start their own throwaway PostgreSQL and Redis servers on loopback.
set -euo pipefail

# Pango and a font for WeasyPrint, the documents' PDFs (their tests render them).
bash "$(dirname "$0")/pdf-prereqs.sh"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${CI:-}" = "true" ]; then
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
fi
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if [ "$(id -u)" != "0" ] && [ -z "$sudo" ]; then
  echo "test-prereqs: cannot install ${need[*]} (not root, no sudo)." >&2
  [ "${CI:-}" = "true" ] && exit 1
  echo "test-prereqs: the tests that need them will be skipped." >&2
  exit 0
fi
echo "test-prereqs: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Do not let package scripts start system-wide services: the tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
