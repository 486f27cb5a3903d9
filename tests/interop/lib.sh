# Shared by the interop scripts (and bench/compare-alertmanager.sh): logging,
# failure reports with the logs of every process, cleanup of every process
# started, readiness waits, free ports and the tocsin binary.
#
# A script sets HERE and REPO, sources this file, appends the PIDs it starts
# to PIDS, and writes its processes' logs as $TMP/*.log.

TMP=""
PIDS=()
START_SECONDS=${START_SECONDS:-$SECONDS}

log() { printf '[interop] %s\n' "$*"; }
pass() { printf 'PASS: %s\n' "$*"; }

# The tail of every log in $TMP, without colour codes.
dump_logs() {
    [[ -n "$TMP" ]] || return 0
    local f
    for f in "$TMP"/*.log; do
        [[ -f "$f" ]] || continue
        echo "----- tail of $(basename "$f" .log) log ($f) -----"
        tail -n 40 "$f" | sed 's/\x1b\[[0-9;]*m//g' || true
    done
}

# SIGTERM, then SIGKILL after 5 s.
stop() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ $rc -ne 0 ]]; then
        # Unexpected errors (set -e) have not printed the logs yet.
        [[ -n "${FAILED_REPORTED:-}" ]] || { echo "FAIL: script error (exit $rc)"; dump_logs; }
    fi
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop "${PIDS[$i]}"
    done
    if [[ -n "$TMP" ]]; then
        if [[ -n "${KEEP_TMP:-}" || $rc -ne 0 ]]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fail() prints the logs itself and tells cleanup so.
fail() {
    printf 'FAIL: %s\n' "$*"
    dump_logs
    FAILED_REPORTED=1
    exit 1
}

free_port() {
    free_ports 1
}

# N distinct free ports on one line, chosen by the kernel.
free_ports() {
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# Installs a Debian package unless its command is there (`apt-get update`
# only when the first try fails).
need_command() { # command package
    command -v "$1" >/dev/null && return 0
    log "installing $2"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "$2" >/dev/null; then
        apt-get update >/dev/null
        apt-get install -y "$2" >/dev/null
    fi
    command -v "$1" >/dev/null || fail "could not install $2"
}

# Installs a PyPI package for python3 unless `module` already imports.
need_python_module() { # module package
    python3 -c "import $1" 2>/dev/null && return 0
    log "installing $2 from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "$2" \
        || fail "pip install $2 failed"
}

# Waits up to 20 s for `url` to answer 2xx while `pid` lives.
wait_http() { # name url pid
    local name="$1" url="$2" pid="$3" deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$name exited during startup"
        ((SECONDS < deadline)) || fail "$name not ready at $url after 20s"
        sleep 0.2
    done
}

# Sets TOCSIN_BIN: as given, or a fresh debug build.
tocsin_bin() {
    if [[ -n "${TOCSIN_BIN:-}" ]]; then
        [[ -x "$TOCSIN_BIN" ]] || fail "TOCSIN_BIN=$TOCSIN_BIN is not executable"
        return 0
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tocsin-target}"
    log "building tocsin (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    local started=$SECONDS
    (cd "$REPO" && cargo build --quiet) || fail "cargo build failed"
    log "build took $((SECONDS - started))s"
    TOCSIN_BIN="$CARGO_TARGET_DIR/debug/tocsin"
}

# For the benchmarks: sets TOCSIN_BIN to the given (release) binary, or a
# fresh release build, and clears the environment's TOCSIN__* overrides,
# TOCSIN_CONFIG and RUST_LOG so the runs use only their own configuration.
tocsin_release_bin() {
    if [[ -n "${TOCSIN_BIN:-}" ]]; then
        [[ -x "$TOCSIN_BIN" ]] || fail "TOCSIN_BIN=$TOCSIN_BIN is not executable"
    else
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tocsin-target}"
        log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$REPO" && cargo build --release --quiet) || fail "cargo build --release failed"
        TOCSIN_BIN="$CARGO_TARGET_DIR/release/tocsin"
    fi
    local var
    while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(TOCSIN__[^=]*\)=.*/\1/p')
    unset TOCSIN_CONFIG RUST_LOG
}

# start_page_receiver PORT FILE: a webhook receiver on 127.0.0.1:PORT that
# answers 200 and appends each POST to FILE as a JSON line {path, key (the
# Idempotency-Key header), at (unix seconds)}; its PID joins PIDS.
start_page_receiver() {
    local port="$1" out="$2"
    python3 - "$port" "$out" >"$TMP/receiver.log" 2>&1 <<'EOF' &
import http.server, json, sys, threading, time
out = open(sys.argv[2], "a", buffering=1)
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            out.write(json.dumps({"path": self.path, "key": self.headers.get("idempotency-key"),
                                  "at": time.time()}) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
    PIDS+=($!)
}

# poll CMD [ARGS...]: runs CMD every 0.5 s until it exits 0, for up to
# POLL_TIMEOUT seconds (default 30), and leaves its last output in POLL_OUT.
# Fails at once if a process named in WATCH ("name:pid" words) has died.
# Returns 1 when time runs out.
poll() {
    local deadline=$((SECONDS + ${POLL_TIMEOUT:-30})) w
    while :; do
        if POLL_OUT="$("$@")"; then
            return 0
        fi
        for w in ${WATCH:-}; do
            kill -0 "${w#*:}" 2>/dev/null || fail "${w%%:*} died"
        done
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# Prints the path of the debug build of examples/NAME.rs, building it first.
example_bin() { # name
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tocsin-target}"
    (cd "$REPO" && cargo build --quiet --example "$1") >&2 || fail "cargo build --example $1 failed"
    echo "$CARGO_TARGET_DIR/debug/examples/$1"
}

# Starts tocsin with $TMP/tocsin.toml, logging to $TMP/tocsin.log, without
# any TOCSIN__ overrides from the caller's environment; waits until ready.
start_tocsin() { # base_url
    while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(TOCSIN__[^=]*\)=.*/\1/p')
    unset TOCSIN_CONFIG
    log "starting tocsin on $1"
    "$TOCSIN_BIN" serve --config "$TMP/tocsin.toml" >"$TMP/tocsin.log" 2>&1 &
    TOCSIN_PID=$!
    PIDS+=("$TOCSIN_PID")
    wait_http tocsin "$1/readyz" "$TOCSIN_PID"
}
