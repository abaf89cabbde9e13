#!/usr/bin/env bash
# Set everything up (Python packages, PostgreSQL, Chromium), then run the whole test suite with
# the store tests on both SQLite and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_apt[*]} (install them, or run as root)" >&2; exit 1
  fi
fi

pgdir=$(mktemp -d /tmp/tuneloop-pg.XXXXXX)
# a free loopback port unless one is given: a developer's own PostgreSQL may hold 5432 or 54329
port=${TUNELOOP_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
trap 'bash scripts/postgres.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
# assigned on its own line so that a server that cannot start stops the run (set -e)
pg_url=$(bash scripts/postgres.sh start "$pgdir" "$port")
export TUNELOOP_TEST_POSTGRES_URL=$pg_url
export TUNELOOP_REQUIRE_POSTGRES=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest "$@"
