# Shared by the client checks (sourced, after `set -euo pipefail` and with $here set to
# the check's folder): a scratch dir removed on exit, a venv with the check's pinned
# requirements, and a fresh ctxguard on an ephemeral port.
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# python_venv: $here/.venv with $here/requirements.txt installed; sets $venv.
python_venv() {
    venv="$here/.venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
}

# start_ctxguard BIN [flags…]: serves $work/data; sets $pid, $url and $key (the bootstrap
# admin key).
start_ctxguard() {
    local bin="$1"; shift
    "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/data" --log warn "$@" >"$work/server.out" 2>"$work/server.err" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    url="$(sed -n 's/^ctxguard listening on //p' "$work/server.out")"
    [ -n "$url" ] || { cat "$work/server.err"; exit 1; }
    key="$(cat "$work/data/admin.key")"
}

# stop_ctxguard: stops it gracefully (so that queued audit records are written).
stop_ctxguard() {
    kill -TERM "$pid"; wait "$pid" || true; pid=""
}
