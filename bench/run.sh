#!/usr/bin/env bash
# ctxguard benchmark harness: measures ctxguard against a bare axum baseline in the same
# run, on the same machine, and prints one table plus a JSON line per scenario with the
# ratio to the baseline. Absolute numbers on a shared machine are noise; ratios are the
# result. Usage: bench/run.sh [--quick]   (--quick: short runs, for CI smoke tests)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
duration=10s; conns=8; warmup=2s
if [ "${1:-}" = "--quick" ]; then duration=2s; conns=4; warmup=1s; fi

command -v wrk >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq jq >/dev/null; }
(cd "$root" && cargo build --release --quiet --bin ctxguard -p ctxguard -p ctxguard-bench-baseline)
target="${CARGO_TARGET_DIR:-$root/target}/release"

# Server on core 0, load generator on core 1 when there are two cores or more.
if [ "$(nproc)" -ge 2 ]; then srv_cpu=(taskset -c 0); load_cpu=(taskset -c 1); split="server core 0, wrk core 1"
else srv_cpu=(); load_cpu=(); split="no pinning (one core)"; fi

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_line() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

results="$work/results.jsonl"
baseline_rps=""
# run NAME PID URL [wrk args...]: warm up, measure, append one JSON line.
run() {
    local name="$1" pid="$2" url="$3"; shift 3
    "${load_cpu[@]}" wrk -t1 -c"$conns" -d"$warmup" "$@" "$url" >/dev/null
    local out; out="$("${load_cpu[@]}" wrk -t1 -c"$conns" -d"$duration" --latency "$@" "$url")"
    local rps p50 p99 errors
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    errors="$(awk '/Non-2xx/ {n += $5} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")"
    [ -n "$baseline_rps" ] || baseline_rps="$rps"
    jq -cn --arg s "$name" --argjson rps "$rps" --argjson p50 "$p50" --argjson p99 "$p99" --argjson err "$errors" \
        --argjson rss "$(rss_kb "$pid")" --argjson base "$baseline_rps" --arg split "$split" \
        '{scenario: $s, rps: $rps, p50_ms: $p50, p99_ms: $p99, errors: $err, server_rss_kb: $rss,
          ratio_to_baseline: (($rps / $base * 1000 | round) / 1000), cores: $split}' | tee -a "$results"
}

# --- the bare baseline
"${srv_cpu[@]}" "$target/ctxguard-bench-baseline" 127.0.0.1:0 >"$work/baseline.out" &
pids+=($!); base_pid=$!
wait_line "$work/baseline.out" "listening on"
base_url="$(sed -n 's/^baseline listening on //p' "$work/baseline.out")"
run "baseline GET /context (no auth)" "$base_pid" "$base_url/context/x"

# --- ctxguard
"${srv_cpu[@]}" "$target/ctxguard" serve --bind 127.0.0.1:0 --data-dir "$work/data" --log warn --max-history 1000000 \
    >"$work/ctxguard.out" 2>"$work/ctxguard.err" &
pids+=($!); cg_pid=$!
wait_line "$work/ctxguard.out" "listening on"
url="$(sed -n 's/^ctxguard listening on //p' "$work/ctxguard.out")"
sleep 0.5
idle_rss="$(rss_kb "$cg_pid")"
admin="$(cat "$work/data/admin.key")"
api() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
client="$(api -X POST "$url/admin/clients" -d '{"name":"bench","grant_types":["client_credentials"],"roles":["writer"]}')"
cid="$(jq -r .client_id <<<"$client")"; secret="$(jq -r .client_secret <<<"$client")"
jwt="$(curl -sf -u "$cid:$secret" -d grant_type=client_credentials -d 'scope=context:read context:inject context:write' "$url/oauth/token" | jq -r .access_token)"
jwt_mcp="$(curl -sf -u "$cid:$secret" -d grant_type=client_credentials -d "resource=$url/mcp" -d 'scope=mcp:write' "$url/oauth/token" | jq -r .access_token)"
principal="$(api -X POST "$url/admin/principals" -d '{"kind":"agent","name":"bench-agent","roles":["writer"]}' | jq -r .id)"
apikey="$(api -X POST "$url/admin/api-keys" -d "{\"principal\":\"$principal\"}" | jq -r .key)"
new_context() {
    curl -sf -X POST "$url/context" -H "Authorization: Bearer $jwt" -H 'Content-Type: application/json' \
        -d '{"metadata":{"user_id":"user-123","topic":"billing"},"session":{"history":[{"role":"system","message":"You are a support agent."},{"role":"user","message":"Where is my invoice?"},{"role":"assistant","message":"It is in your inbox."}]}}' \
        | jq -r .context_id
}
read_id="$(new_context)"; append_id="$(new_context)"

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
cat >"$work/token.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic $(printf '%s:%s' "$cid" "$secret" | base64 -w0)"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials"
LUA
meta='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
cat >"$work/mcp.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $jwt_mcp"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "context_get"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"context_get","arguments":{"context_id":"$read_id"},$meta}}'
LUA

run "GET /context/{id} + JWT" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $jwt"
run "GET /context/{id} + API key" "$cg_pid" "$url/context/$read_id" -H "Authorization: Bearer $apikey"
run "90% GET / 10% append + JWT" "$cg_pid" "$url" -s "$work/mix.lua"
run "POST /context + JWT" "$cg_pid" "$url/context" -s "$work/create.lua"
run "POST /oauth/token client_credentials" "$cg_pid" "$url/oauth/token" -s "$work/token.lua"
run "MCP tools/call context_get + JWT (2026-07-28)" "$cg_pid" "$url/mcp" -s "$work/mcp.lua"
loaded_rss="$(rss_kb "$cg_pid")"
jq -cn --argjson idle "$idle_rss" --argjson loaded "$loaded_rss" '{scenario: "ctxguard RSS", idle_rss_kb: $idle, loaded_rss_kb: $loaded}' | tee -a "$results"

echo
echo "ctxguard bench — $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $split, wrk 1 thread × $conns connections × $duration"
printf '%-46s %10s %9s %9s %7s %9s %7s\n' scenario req/s p50_ms p99_ms errors rss_MB ratio
jq -r 'select(.rps) | [.scenario, (.rps|floor), .p50_ms, .p99_ms, .errors, ((.server_rss_kb/1024*10|round)/10), .ratio_to_baseline] | @tsv' "$results" \
    | awk -F'\t' '{printf "%-46s %10s %9s %9s %7s %9s %7s\n", $1, $2, $3, $4, $5, $6, $7}'
printf 'ctxguard RSS: idle %.1f MB, after load %.1f MB\n' "$(bc -l <<<"$idle_rss/1024")" "$(bc -l <<<"$loaded_rss/1024")"
