#!/usr/bin/env bash
# The audit chain checked by a third party: a fresh ctxguard serves a few requests and
# stops, `ctxguard audit export` writes the log, and a Python RFC 8785 implementation
# (rfc8785, pinned) recomputes every hash (docs/audit.md); an edited copy must fail.
# Usage: clients/audit/run.sh [path/to/ctxguard]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/debug/ctxguard}"
. "$here/../lib.sh"
python_venv

start_ctxguard "$bin" --metrics-bind off
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
for i in 1 2 3; do
    id="$(curl -sf "${auth[@]}" -X POST "$url/context" \
        -d "{\"metadata\":{\"n\":$i,\"note\":\"\\u00e9 \\\"quoted\\\" \\\\ tab\\t\"},\"session\":{\"history\":[{\"role\":\"user\",\"message\":\"hi\"}]}}" \
        | sed -n 's/.*"context_id":"\([^"]*\)".*/\1/p')"
    curl -sf "${auth[@]}" "$url/context/$id" >/dev/null
done
curl -s -o /dev/null -H "Authorization: Bearer forged.token.value" "$url/context/$id"
stop_ctxguard

"$bin" audit export --data-dir "$work/data" --format jsonl >"$work/audit.jsonl"
"$venv/bin/python" "$here/verify.py" "$work/audit.jsonl"
sed '3s/"decision":"allow"/"decision":"deny"/' "$work/audit.jsonl" >"$work/edited.jsonl"
"$venv/bin/python" "$here/verify.py" "$work/edited.jsonl" --expect-broken
"$bin" audit verify --data-dir "$work/data"
