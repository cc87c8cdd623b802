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
      echo "vendor-js: affnet needs npm to install Chart.js and pdf.js. Install Debian's packages, then retry:" >&2
      echo "    sudo apt-get install nodejs npm" >&2
      exit 1
    fi
    echo "vendor-js: npm is missing; installing Debian's nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
  fi
  echo "installing the browser libraries in package-lock.json into node_modules/"
  # Optional dependencies are for Node only (pdfjs-dist's canvas, a native build): the browser needs none.
  npm ci --omit=optional --no-audit --no-fund --silent
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
  # pdf.js (legacy build: ES modules for older browsers too) reads the documents' PDFs back in the
  # browser checks (tests/e2e/test_document_pdfs.py): the library and its worker.
  local pdfjs=node_modules/pdfjs-dist/legacy/build name
  for name in pdf.min.mjs pdf.worker.min.mjs; do
    if [ ! -f "$pdfjs/$name" ]; then
      echo "vendor-js: $pdfjs/$name is missing (run: $0 install)" >&2
      exit 1
    fi
    sed '/^\/\/# sourceMappingURL=/d' "$pdfjs/$name" > "static/vendor/$name.tmp"
    mv "static/vendor/$name.tmp" "static/vendor/$name"
  done
  cp node_modules/pdfjs-dist/LICENSE static/vendor/pdfjs.LICENSE
  echo "copied pdf.js $(node -p 'require("./node_modules/pdfjs-dist/package.json").version') to static/vendor/"
}

case "${1:-all}" in
  install) install ;;
  copy) copy ;;
  all) install; copy ;;
  *) echo "usage: $0 [install|copy]" >&2; exit 2 ;;
esac
