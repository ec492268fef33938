#!/usr/bin/env bash
# aws-topology launcher. Bootstraps .venv from pyproject.toml on first use.
#   ./run.sh                 demo: moto server on 127.0.0.1, seeded estate, real scan, summary
#   ./run.sh test [ARGS]     ruff + the offline test suite (cassettes + in-process moto)
#   ./run.sh record SERVICE [SERVICE...]   aws-topology record, with the test extras it needs
#   ./run.sh ARGS            any aws-topology command, e.g. ./run.sh scan -c conf.yaml --out out/
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}

bootstrap() {
  local stamp="$VENV/.installed-$1"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]"
    touch "$stamp"
  fi
}

# The topology page's graph library (web/node_modules, pinned by web/package-lock.json); `aws-topology view`
# inlines it into the page.
bootstrap_web() {
  [ -f web/node_modules/cytoscape/dist/cytoscape.min.js ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "run.sh: npm not found: the topology page needs \`npm ci\` in web/ (Node 20+)" >&2
    return 1
  fi
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
}

# The NodeJS OpenTelemetry layer's packages and the AWS SDK of its end-to-end test (deploy/otel-layer/node_modules,
# pinned by its package-lock.json): tests/traces/test_layer.py builds the layer and runs a function under it.
bootstrap_layer() {
  local dir=deploy/otel-layer installed=deploy/otel-layer/node_modules/.package-lock.json
  [ -f "$installed" ] && [ ! "$dir/package-lock.json" -nt "$installed" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "run.sh: npm not found: the OpenTelemetry layer needs \`npm ci\` in $dir (Node 20+)" >&2
    return 1
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# The topology page tests drive Debian's chromium (Playwright's own browser download is not used): installed
# with apt-get where it is missing and apt-get can run (root, or sudo without a password).
bootstrap_browser() {
  [ -x /usr/bin/chromium ] || [ -n "${CHROMIUM:-}" ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "run.sh: no chromium and no apt-get" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# The PostgreSQL state tests start a throwaway server from Debian's binaries (/usr/lib/postgresql/*/bin, as a
# non-root user): installed with apt-get where they are missing and apt-get can run (root, or sudo without a
# password); without them those tests are skipped, unless AWS_TOPOLOGY_REQUIRE_POSTGRES is set (CI).
bootstrap_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "run.sh: no PostgreSQL server and no apt-get" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

# Wait until the moto server started in the background has printed its endpoint (it does so after it
# listens and has warmed every service), then print that endpoint. Fails with the log's tail when the
# server exits first or is not ready within $3 seconds.
wait_for_server() {
  local pid=$1 log=$2 timeout=$3 endpoint=""
  local deadline=$((SECONDS + timeout))
  while :; do
    endpoint=$(grep -m1 -E '^http://127\.0\.0\.1:[0-9]+$' "$log" 2>/dev/null || true)
    [ -n "$endpoint" ] && { echo "$endpoint"; return 0; }
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: the moto server (pid $pid) exited before it was ready; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "run.sh: the moto server (pid $pid) was not ready after ${timeout}s; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

demo() {
  bootstrap demo
  local out endpoint
  out="out/demo-$(date -u +%Y%m%dT%H%M%SZ)"
  # Port 0 lets the OS pick a free port when the server binds (no probe-then-bind race); MOTO_PORT pins it.
  : >.moto.log  # emptied here, not by the child's redirection, so no stale endpoint line can be read
  "$VENV/bin/python" -m demo.server --port "${MOTO_PORT:-0}" >>.moto.log 2>&1 &
  MOTO_PID=$!
  trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
  endpoint=$(wait_for_server "$MOTO_PID" .moto.log "${MOTO_READY_TIMEOUT:-60}")
  export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  "$VENV/bin/python" -m demo.seed --endpoint "$AWS_ENDPOINT_URL"
  echo "scanning the demo estate (moto server $AWS_ENDPOINT_URL, config demo/conf.yaml)"
  local rc=0
  "$VENV/bin/aws-topology" scan -c demo/conf.yaml --out "$out" --state .state/demo.sqlite --table || rc=$?
  echo "payloads: $(find "$out" -name 'scan-*.json' | wc -l) file(s) in $out/"
  "$VENV/bin/python" -m demo.flowlogs --endpoint "$AWS_ENDPOINT_URL"
  "$VENV/bin/aws-topology" flowlogs -c demo/conf.yaml --out "$out" --state .state/demo.sqlite || rc=$?
  if bootstrap_web && "$VENV/bin/aws-topology" view -c demo/conf.yaml --state .state/demo.sqlite \
      --out "$out/topology.html"; then
    echo "topology page: $out/topology.html (open it in a browser; it works offline)"
  fi
  return "$rc"
}

case "${1:-}" in
  "") demo ;;
  test)
    shift
    bootstrap test
    bootstrap_web || echo "run.sh: the topology page tests will fail without web/node_modules" >&2
    bootstrap_layer || echo "run.sh: the layer test will fail without deploy/otel-layer/node_modules" >&2
    bootstrap_browser || echo "run.sh: the topology page tests need chromium (apt-get install chromium)" >&2
    bootstrap_postgres || echo "run.sh: the PostgreSQL state tests need a server (apt-get install postgresql)" >&2
    "$VENV/bin/ruff" check engine demo tests bench
    exec "$VENV/bin/pytest" "$@"
    ;;
  record)
    # `aws-topology record SERVICE...` with the test extras installed: only those (no browser, npm or
    # PostgreSQL: no recorded test needs them).
    shift
    bootstrap test
    exec "$VENV/bin/aws-topology" record "$@"
    ;;
  view) bootstrap demo; bootstrap_web; exec "$VENV/bin/aws-topology" "$@" ;;
  *) bootstrap demo; exec "$VENV/bin/aws-topology" "$@" ;;
esac
