#!/usr/bin/env bash
# Context signatures checked by a third party: a fresh ctxguard stores a context in
# three versions, and Python code that shares nothing with ours (jwcrypto for the JWS,
# rfc8785 for canonical JSON, pinned) verifies every version against /oauth/jwks by the
# algorithm of docs/integrity.md; an edited copy must fail. A sealed inline context is
# checked by jwcrypto as a JWT. `ctxguard context verify` is run on the same files.
# Usage: clients/integrity/run.sh [path/to/ctxguard]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/debug/ctxguard}"
. "$here/../lib.sh"
python_venv

start_ctxguard "$bin" --metrics-bind off
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')

id="$(curl -sf "${auth[@]}" -X POST "$url/context" \
    -d '{"metadata":{"n":1.50,"big":1e21,"small":1e-7,"text":"\u00e9 \"q\" \\ \t \ud83d\ude00","z":{"b":[true,null],"a":{}}},
         "session":{"history":[{"role":"user","message":"hi \u2028 there"}]},"expires":"2099-01-01T00:00:00Z"}' \
    | sed -n 's/.*"context_id":"\([^"]*\)".*/\1/p')"
curl -sf "${auth[@]}" -X POST "$url/context/$id/messages" \
    -d '{"messages":[{"role":"assistant","message":"line\nbreak"},{"role":"system","message":"\u0001"}]}' >/dev/null
curl -sf "${auth[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' "$url/context/$id" \
    -d '{"metadata":{"n":2,"added":"x"}}' >/dev/null
curl -sf "$url/oauth/jwks" >"$work/jwks.json"
for v in 1 2 3; do curl -sf "${auth[@]}" "$url/context/$id/versions/$v" >"$work/v$v.json"; done
curl -sf "${auth[@]}" "$url/context/$id" >"$work/latest.json"

"$venv/bin/python" "$here/verify.py" "$work/jwks.json" "$work/v1.json" "$work/v2.json" "$work/v3.json" "$work/latest.json"
sed 's/line\\nbreak/line break/' "$work/v2.json" >"$work/edited-message.json"
sed 's/"n":2/"n":3/' "$work/v3.json" >"$work/edited-metadata.json"
"$venv/bin/python" "$here/verify.py" "$work/jwks.json" "$work/edited-message.json" "$work/edited-metadata.json" --expect-broken

# A sealed inline context, checked by jwcrypto as a JWT (signature, exp, aud).
curl -sf "${auth[@]}" -X POST "$url/context/$id/seal" -d '{"audience":"agent-b","last":2}' | sed -n 's/.*"ocp_context":"\([^"]*\)".*/\1/p' >"$work/sealed.jwt"
"$venv/bin/python" "$here/verify.py" "$work/jwks.json" --sealed "$work/sealed.jwt" agent-b
if "$venv/bin/python" "$here/verify.py" "$work/jwks.json" --sealed "$work/sealed.jwt" agent-c 2>/dev/null; then
    echo "jwcrypto accepted a sealed context for another audience" >&2; exit 1
fi

# Our own verifier agrees, offline and against the server.
"$bin" context verify --jwks "$url/oauth/jwks" "$work/v2.json" >/dev/null
if "$bin" context verify --jwks "$url/oauth/jwks" "$work/edited-message.json" 2>/dev/null; then
    echo "ctxguard context verify accepted an edited context" >&2; exit 1
fi
CTXGUARD_API_KEY="$key" "$bin" context verify --server "$url" --id "$id" --version 1 >/dev/null
stop_ctxguard
"$bin" context verify --data-dir "$work/data" --id "$id" >/dev/null
echo "every version verified by jwcrypto + rfc8785 and by ctxguard context verify; edits refused"
