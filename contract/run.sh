#!/usr/bin/env bash
# The OpenAPI document is the contract: schemathesis (pinned) generates requests from
# /openapi.json of a fresh ctxguard — every phase (examples, coverage, fuzzing,
# stateful), every check — and fails on any answer the document does not describe:
# a server error, an undocumented status, a body or header that breaks its schema,
# a schema-valid request refused or an invalid one accepted.
# It runs as the bootstrap administrator; the API refuses to let an administrator
# revoke or disable its own credential, so the fuzzed calls cannot lock it out.
# The address lockout and the rate limits (docs/anomaly.md) are turned off:
# schemathesis sends broken credentials by the hundred and requests by the thousand
# from one address, and a locked-out or throttled fuzzer learns nothing; the 429 it
# would meet is documented on every operation all the same.
# hooks.py holds the three rules JSON Schema cannot state (see there).
# Usage: contract/run.sh [path/to/ctxguard] [max examples per operation, default 40]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/debug/ctxguard}"
examples="${2:-40}"
venv="$here/.venv"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"; }

"$bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" --log warn \
    --anomaly-auth-failures-per-source 0 --rate-limit-read 0/0 --rate-limit-write 0/0 --rate-limit-mcp 0/0 \
    --rate-limit-token 0/0 --rate-limit-login 0/0 --rate-limit-admin 0/0 --rate-limit-other 0/0 >"$work/server.out" 2>"$work/server.err" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$url" ] || { cat "$work/server.err"; exit 1; }

echo "schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}') against $url/openapi.json ($examples examples per operation)"
cd "$work"
status=0
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" "$venv/bin/schemathesis" run "$url/openapi.json" \
    -H "Authorization: Bearer $(cat "$work/data/admin.key")" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --seed 20261204 --workers 2 --no-color \
    --request-timeout 10 --warnings off >"$work/report.txt" 2>&1 || status=$?
sed -n '/=== SUMMARY ===/,$p' "$work/report.txt"
if [ "$status" -ne 0 ]; then
    echo "schemathesis: the server and its OpenAPI document disagree; full report:"
    cat "$work/report.txt"
fi
if grep -q "panicked" "$work/server.err"; then
    echo "the server panicked:"; cat "$work/server.err"; status=1
fi
exit "$status"
