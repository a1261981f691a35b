#!/usr/bin/env bash
# A/B of two ctxguard builds on the hot path, as an issue's "costs ≤ N % more than
# before" is measured: both servers run with default flags (plus the bench's anomaly and
# rate-limit headroom) on core 0, wrk on core 1, and the rounds interleave
# (A, B, A, B, …) so that the shared host's swings hit both alike. Reported per scenario:
# medians of req/s and of server CPU time per request, and B ÷ A of the CPU medians.
#
# Usage: bench/ab.sh OLD_BIN NEW_BIN   (env: ROUNDS=5, DUR=5s, CONNS=8; B_FLAGS: extra
# `serve` flags for B, e.g. the same binary with a feature turned on)
# Scenarios: GET /context + JWT; POST /context + JWT; append one message to a
# 10,000-message context (Prefer: return=minimal) + API key, spread over 4 contexts.
set -euo pipefail
old="$1"; new="$2"
rounds="${ROUNDS:-5}"; dur="${DUR:-5s}"; conns="${CONNS:-8}"
for tool in wrk jq bc; do command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; } >/dev/null; done
if [ "$(nproc)" -ge 2 ]; then srv_cpu=(taskset -c 0); load_cpu=(taskset -c 1); else srv_cpu=(); load_cpu=(); fi
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# start NAME BIN [FLAGS…]: a server on its own data dir; sets pid_NAME, url_NAME, key_NAME, jwt_NAME, …
start() {
    local name="$1" bin="$2" dir="$work/$1"; shift 2
    "${srv_cpu[@]}" "$bin" serve --bind 127.0.0.1:0 --metrics-bind off --data-dir "$dir" --log warn \
        --max-history 1000000 --max-context-bytes 1073741824 --anomaly-writes-per-principal 1000000000000 \
        --rate-limit-read 4000000000/4000000000 --rate-limit-write 4000000000/4000000000 "$@" \
        >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!); printf -v "pid_$name" '%s' $!
    for _ in $(seq 1 300); do grep -q "listening on" "$work/$name.out" 2>/dev/null && break; sleep 0.05; done
    local url; url="$(sed -n 's/^ctxguard listening on //p' "$work/$name.out")"
    [ -n "$url" ] || { cat "$work/$name.err"; exit 1; }
    local admin; admin="$(cat "$dir/admin.key")"
    api() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
    local client cid secret principal key jwt
    client="$(api -X POST "$url/admin/clients" -d '{"name":"ab","grant_types":["client_credentials"],"roles":["writer"]}')"
    cid="$(jq -r .client_id <<<"$client")"; secret="$(jq -r .client_secret <<<"$client")"
    principal="$(api -X POST "$url/admin/principals" -d '{"kind":"agent","name":"ab-agent","roles":["writer"]}' | jq -r .id)"
    key="$(api -X POST "$url/admin/api-keys" -d "{\"principal\":\"$principal\"}" | jq -r .key)"
    jwt="$(curl -sf -u "$cid:$secret" -d grant_type=client_credentials -d 'scope=context:read context:inject context:write' \
        "$url/oauth/token" | jq -r .access_token)"
    new_context() {
        curl -sf -X POST "$url/context" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
            -d '{"metadata":{"user_id":"user-123","topic":"billing"},"session":{"history":[{"role":"user","message":"Message 0 of a support conversation about an invoice."}]}}' \
            | jq -r .context_id
    }
    local read_id; read_id="$(new_context)"
    : >"$work/$name.long"
    for _ in 1 2 3 4; do
        local id left=9999; id="$(new_context)"
        while [ "$left" -gt 0 ]; do
            local k=$((left < 500 ? left : 500))
            jq -cn --argjson k "$k" '{messages: [range($k) | {role: "user", message: "Message \(.) of a support conversation about an invoice."}]}' \
                | curl -sf -X POST "$url/context/$id/messages" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
                    -H 'Prefer: return=minimal' -d @- >/dev/null
            left=$((left - k))
        done
        echo "$id" >>"$work/$name.long"
    done
    cat >"$work/$name.get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $jwt"
LUA
    cat >"$work/$name.post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $jwt"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"metadata":{"topic":"bench"},"session":{"history":[{"role":"user","message":"hello"}]}}'
LUA
    cat >"$work/$name.append.lua" <<LUA
local ids = {}
for line in io.lines("$work/$name.long") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/context/" .. ids[i % #ids + 1] .. "/messages",
    {["Authorization"] = "Bearer $key", ["Content-Type"] = "application/json", ["Prefer"] = "return=minimal"},
    '{"messages":[{"role":"user","message":"Message 0 of a support conversation about an invoice."}]}')
end
LUA
    printf -v "url_$name" '%s' "$url"; printf -v "read_$name" '%s' "$read_id"
}

# measure NAME SCENARIO PATH: one round; appends a JSON line to results.
measure() {
    local name="$1" scenario="$2" path="$3" pid url
    pid="$(eval echo "\$pid_$name")"; url="$(eval echo "\$url_$name")"
    "${load_cpu[@]}" wrk -t1 -c"$conns" -d1s -s "$work/$name.$scenario.lua" "$url$path" >/dev/null
    local c0 c1 out n rps
    c0="$(cpu_ticks "$pid")"
    out="$("${load_cpu[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$work/$name.$scenario.lua" "$url$path")"
    c1="$(cpu_ticks "$pid")"
    n="$(awk '/requests in/ {print $1}' <<<"$out")"; rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    if grep -q "Non-2xx" <<<"$out"; then echo "$name $scenario: errors: $out" >&2; exit 1; fi
    jq -cn --arg b "$name" --arg s "$scenario" --argjson rps "$rps" \
        --argjson cpu "$(bc -l <<<"($c1 - $c0) * 1000000 / $hz / $n")" '{build: $b, scenario: $s, rps: $rps, cpu_us: $cpu}' \
        | tee -a "$work/results.jsonl"
}

# shellcheck disable=SC2086 # B_FLAGS is a list of words
start A "$old"; start B "$new" ${B_FLAGS:-}
for r in $(seq 1 "$rounds"); do
    for b in A B; do
        read_id="$(eval echo "\$read_$b")"
        measure "$b" get "/context/$read_id"
        measure "$b" post "/context"
        measure "$b" append "/"
    done
done
echo "A = $old"; echo "B = $new ${B_FLAGS:-}"; echo "$rounds interleaved rounds of $dur, $conns connections"
jq -s -r 'def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by(.scenario)[] | . as $g
  | ([$g[] | select(.build == "A") | .cpu_us] | median) as $a | ([$g[] | select(.build == "B") | .cpu_us] | median) as $b
  | "\($g[0].scenario)\tA \([$g[] | select(.build == "A") | .rps] | median | floor) req/s \($a * 10 | round / 10) µs\tB \([$g[] | select(.build == "B") | .rps] | median | floor) req/s \($b * 10 | round / 10) µs\tB÷A cpu \($b / $a * 1000 | round / 1000)"' \
  "$work/results.jsonl"
