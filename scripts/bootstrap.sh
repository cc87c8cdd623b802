#!/usr/bin/env bash
# Create the virtualenv and install affnet with its development tools.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "affnet needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$python" -m venv "$venv"
fi
echo "installing affnet and its dependencies into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
# WeasyPrint renders the documents' PDFs with Pango: install it (and a font) when missing.
bash "$(dirname "$0")/pdf-prereqs.sh"
