#!/usr/bin/env bash
# Install what cxstream needs into ./.venv (idempotent; quick when nothing changed).
#   bash infra/setup.sh                      Python packages (Kafka broker and chdb ship as wheels)
#   bash infra/setup.sh --clickhouse-server  also Debian's clickhouse-server, used by the tests
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "cxstream needs Python 3.11 or newer ($py is $("$py" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.cxstream-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing cxstream and its dependencies into .venv (log: .venv/pip.log)"
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip \
         && .venv/bin/python -m pip install --quiet -e '.[test]'; } > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    echo "pip install failed; the whole log is in .venv/pip.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--clickhouse-server" ] && ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/bin/clickhouse ]; then
  sudo=""
  if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
  echo "installing Debian's clickhouse-server (for the server-mode tests)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server >/dev/null
fi
