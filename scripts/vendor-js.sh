#!/usr/bin/env bash
# Install the browser libraries pinned in package-lock.json and copy what the pages load into
# static/vendor/, so the app serves them itself (the CSP allows scripts from 'self' only: no CDN).
#   scripts/vendor-js.sh install   npm ci (installs Debian's nodejs and npm first if root and npm is missing)
#   scripts/vendor-js.sh copy      node_modules/ -> static/vendor/
#   scripts/vendor-js.sh           both
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
  if ! command -v npm >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
    if [ "$(id -u)" != "0" ] && [ -z "$sudo" ]; then
      echo "vendor-js: affnet needs npm to install Chart.js. Install Debian's packages, then retry:" >&2
      echo "    sudo apt-get install nodejs npm" >&2
      exit 1
    fi
    echo "vendor-js: npm is missing; installing Debian's nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
  fi
  echo "installing the browser libraries in package-lock.json into node_modules/"
  npm ci --no-audit --no-fund --silent
}

copy() {
  local dist=node_modules/chart.js/dist src
  src="$dist/chart.umd.min.js"
  [ -f "$src" ] || src="$dist/chart.umd.js"
  if [ ! -f "$src" ]; then
    echo "vendor-js: neither chart.umd.min.js nor chart.umd.js is in $dist (run: $0 install)" >&2
    exit 1
  fi
  mkdir -p static/vendor
  # The source map is not copied, so drop the comment naming it (browsers would ask for a 404).
  sed '/^\/\/# sourceMappingURL=/d' "$src" > static/vendor/chart.umd.js.tmp
  mv static/vendor/chart.umd.js.tmp static/vendor/chart.umd.js
  cp node_modules/chart.js/LICENSE.md static/vendor/chart.js.LICENSE.md
  echo "copied Chart.js $(node -p 'require("./node_modules/chart.js/package.json").version') to static/vendor/"
}

case "${1:-all}" in
  install) install ;;
  copy) copy ;;
  all) install; copy ;;
  *) echo "usage: $0 [install|copy]" >&2; exit 2 ;;
esac
