#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them.
# README set-up command (b); .ci/run runs exactly this. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
# The app's end-to-end test drives a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed (apt-get install chromium); the browser test will say so" >&2
  fi
fi
exec python3 -m pytest "$@"
