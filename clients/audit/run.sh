#!/usr/bin/env bash
# The audit chain checked by a third party: a fresh ctxguard serves a few requests and
# stops, `ctxguard audit export` writes the log, and a Python RFC 8785 implementation
# (rfc8785, pinned) recomputes every hash (docs/audit.md); an edited copy must fail.
# Usage: clients/audit/run.sh [path/to/ctxguard]
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

"$bin" serve --bind 127.0.0.1:0 --metrics-bind off --data-dir "$work/data" --log warn >"$work/server.out" 2>"$work/server.err" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$url" ] || { cat "$work/server.err"; exit 1; }
key="$(cat "$work/data/admin.key")"
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
for i in 1 2 3; do
    id="$(curl -sf "${auth[@]}" -X POST "$url/context" \
        -d "{\"metadata\":{\"n\":$i,\"note\":\"\\u00e9 \\\"quoted\\\" \\\\ tab\\t\"},\"session\":{\"history\":[{\"role\":\"user\",\"message\":\"hi\"}]}}" \
        | sed -n 's/.*"context_id":"\([^"]*\)".*/\1/p')"
    curl -sf "${auth[@]}" "$url/context/$id" >/dev/null
done
curl -s -o /dev/null -H "Authorization: Bearer forged.token.value" "$url/context/$id"
kill -TERM "$pid"; wait "$pid" || true; pid=""

"$bin" audit export --data-dir "$work/data" --format jsonl >"$work/audit.jsonl"
"$venv/bin/python" "$here/verify.py" "$work/audit.jsonl"
sed '3s/"decision":"allow"/"decision":"deny"/' "$work/audit.jsonl" >"$work/edited.jsonl"
"$venv/bin/python" "$here/verify.py" "$work/edited.jsonl" --expect-broken
"$bin" audit verify --data-dir "$work/data"
