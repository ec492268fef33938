#!/usr/bin/env bash
# Builds the Lambda layer zip (default dist/otel-layer.zip; OUT=path to choose) from this folder's
# package-lock.json: `npm ci --omit=dev` in a staging folder (the AWS SDK devDependencies serve the tests only),
# laid out as Lambda extracts a layer into /opt:
#   otel-handler                 /opt/otel-handler (AWS_LAMBDA_EXEC_WRAPPER)
#   nodejs/wrapper.js            /opt/nodejs/wrapper.js (required through NODE_OPTIONS)
#   nodejs/node_modules/...      /opt/nodejs/node_modules (on the Node runtimes' NODE_PATH)
set -euo pipefail
cd "$(dirname "$0")"
out=$(realpath -m "${OUT:-dist/otel-layer.zip}")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/nodejs" "$(dirname "$out")"
cp package.json package-lock.json wrapper.js "$stage/nodejs/"
cp otel-handler "$stage/"
chmod 755 "$stage/otel-handler"
(cd "$stage/nodejs" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error >&2)
rm -f "$out"
(cd "$stage" && zip -qr -X "$out" otel-handler nodejs)
echo "$out"
