#!/usr/bin/env bash
# Install the system packages the tests need, from Debian's packages.
#  - always: Chromium, for the browser journeys (Playwright drives /usr/bin/chromium), and Pango for
#    WeasyPrint (scripts/pdf-prereqs.sh);
#  - with CI=true: PostgreSQL and Redis as well, so both engines are tested; and Debian's WordPress,
#    its block theme, MariaDB, Apache with mod_php and the PHP CLI, for the WordPress plugin's tests
#    (tests/wordpress/: `php -l` of the plugin, and the plugin on a real WordPress; dev/wordpress.py).
# The tests start their own throwaway PostgreSQL and Redis servers on loopback.
set -euo pipefail

# Pango and a font for WeasyPrint, the documents' PDFs (their tests render them).
bash "$(dirname "$0")/pdf-prereqs.sh"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${CI:-}" = "true" ]; then
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ -e /usr/share/wordpress/wp-load.php ] || need+=(wordpress)
  [ -e /usr/share/wordpress/wp-content/themes/twentytwentythree/theme.json ] || need+=(wordpress-theme-twentytwentythree)
  [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
  [ -x /usr/sbin/apache2 ] || need+=(apache2)
  ls /usr/lib/apache2/modules/libphp*.so >/dev/null 2>&1 || need+=(libapache2-mod-php)
  command -v php >/dev/null 2>&1 || need+=(php-cli)
  php -m 2>/dev/null | grep -qx mysqli || need+=(php-mysql)
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
