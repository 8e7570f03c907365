#!/usr/bin/env bash
# One entry point for a fresh machine with Python 3.11+ and apt:
#   bash infra/run.sh demo   set up, run the pipeline with the demo storefront, show KPIs
#   bash infra/run.sh test   set up (with ClickHouse server for the tests), run the tests
#   bash infra/run.sh bench  set up, run the benchmark
# Anything else is passed to the cxstream command inside the project's venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

cmd="${1:-demo}"
shift || true

bash infra/setup.sh
if [ "$cmd" = "test" ] || [ "$cmd" = "bench" ]; then
  bash infra/setup.sh --clickhouse-server
fi

# shellcheck disable=SC1091
. .venv/bin/activate
case "$cmd" in
  # Three test processes (pytest-xdist; each starts its own broker and ClickHouse servers): the
  # suite mostly waits on timers and processes, so three take about a third of one's time on 2 cores.
  # Options given after `test` come last and win (`-n 0`: one process).
  test) exec python -m pytest -n 3 --dist worksteal "$@" ;;
  demo) exec cxstream demo "$@" ;;
  bench) exec cxstream bench "$@" ;;
  *) exec cxstream "$cmd" "$@" ;;
esac
