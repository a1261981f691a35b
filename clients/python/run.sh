#!/usr/bin/env bash
# Runs the official MCP Python SDK's client (OAuth + Streamable HTTP) against a fresh
# ctxguard, in a venv created here. Usage: clients/python/run.sh [path/to/ctxguard]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/debug/ctxguard}"
venv="$here/.venv"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

"$bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" --log warn >"$work/server.out" 2>"$work/server.err" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$url" ] || { cat "$work/server.err"; exit 1; }
export FLOW_ADMIN_KEY="$(cat "$work/data/admin.key")"

for mode in initialize discover; do
    echo "-- $mode"
    "$venv/bin/python" "$here/flow.py" "$url" pat "correct horse battery" "$mode"
done
