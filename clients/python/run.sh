#!/usr/bin/env bash
# Runs the official MCP Python SDK's client (OAuth + Streamable HTTP) against a fresh
# ctxguard, in a venv created here. Usage: clients/python/run.sh [path/to/ctxguard]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/debug/ctxguard}"
. "$here/../lib.sh"
python_venv

start_ctxguard "$bin" --metrics-bind 127.0.0.1:0
export FLOW_ADMIN_KEY="$key"

for mode in initialize discover; do
    echo "-- $mode"
    "$venv/bin/python" "$here/flow.py" "$url" pat "correct horse battery" "$mode"
done
