#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them.
# README set-up command (b); .ci/run runs exactly this. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
# The app's end-to-end test drives a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if as_root_with_apt; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed (apt-get install chromium); the browser test will say so" >&2
  fi
fi
# The PostgreSQL tests (storage, chaos) use a real server: a throwaway one on loopback, stopped
# and deleted when the tests end, unless WORKBENCH_TEST_PG_URL names one already.
if [ -z "${WORKBENCH_TEST_PG_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if as_root_with_apt; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
  fi
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    PG_DIR=$(mktemp -d /tmp/workbench-pg.XXXXXX)
    trap 'bash scripts/postgres.sh stop "$PG_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORKBENCH_TEST_PG_URL=$(bash scripts/postgres.sh start "$PG_DIR")
    export WORKBENCH_TEST_PG_URL
  else
    echo "note: PostgreSQL is not installed (apt-get install postgresql); the PostgreSQL tests will say so" >&2
  fi
fi
# Two pytest processes (pytest-xdist), one per core of a CI machine: the suite is CPU-bound and
# serial it took 16-17 min there; WORKBENCH_TEST_WORKERS=0 runs it in this process.
# Not exec: the trap above stops the server after pytest; the script exits with pytest's status.
# The 15 slowest tests are listed at the end: the suite runs near its 10-minute budget on CI.
python3 -m pytest -n "${WORKBENCH_TEST_WORKERS:-2}" --durations=15 "$@"
