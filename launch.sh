#!/usr/bin/env bash
# Video LoRA Studio launcher.
#   ./launch.sh [GUI options]        create .venv, install what the app needs, start the GUI on 127.0.0.1:7860
#   ./launch.sh --test [pytest args] install the test tools too (and Debian's chromium when run as root), then run
#                                    ruff and the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "Video LoRA Studio needs Python 3.10 or newer as '$PYTHON' (set PYTHON=/path/to/python3.x)." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

# Install once per change of pyproject.toml: a re-launch starts at once.
install() {
  local extras=$1
  local stamp=".venv/.installed${extras}-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extras}"
    touch "$stamp"
  fi
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser tests..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need Chromium: sudo apt-get install chromium (or set VLS_CHROMIUM=/path/to/chrome)." >&2
    exit 1
  fi
}

if [ "${1:-}" = "--test" ]; then
  shift
  install "[test]"
  ensure_chromium
  .venv/bin/python -m ruff check .
  exec .venv/bin/python -m pytest -q "$@"
fi

install ""
exec .venv/bin/python app.py "$@"
