#!/usr/bin/env bash
# aws-topology launcher. Bootstraps .venv from pyproject.toml on first use.
#   ./run.sh                 demo: moto server on 127.0.0.1, seeded estate, real scan, summary
#   ./run.sh test [ARGS]     ruff + the offline test suite (cassettes + in-process moto)
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

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

demo() {
  bootstrap demo
  local port out
  port=${MOTO_PORT:-$(free_port)}
  out="out/demo-$(date -u +%Y%m%dT%H%M%SZ)"
  "$VENV/bin/python" -m demo.server --port "$port" >.moto.log 2>&1 &
  MOTO_PID=$!
  trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  "$VENV/bin/python" -m demo.seed --endpoint "$AWS_ENDPOINT_URL"
  echo "scanning the demo estate (moto server $AWS_ENDPOINT_URL, config demo/conf.yaml)"
  local rc=0
  "$VENV/bin/aws-topology" scan -c demo/conf.yaml --out "$out" --state .state/demo.sqlite --table || rc=$?
  echo "payloads: $(find "$out" -name '*.json' | wc -l) file(s) in $out/"
  return "$rc"
}

case "${1:-}" in
  "") demo ;;
  test)
    shift
    bootstrap test
    "$VENV/bin/ruff" check engine demo tests bench
    exec "$VENV/bin/pytest" "$@"
    ;;
  *) bootstrap demo; exec "$VENV/bin/aws-topology" "$@" ;;
esac
