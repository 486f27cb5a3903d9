#!/usr/bin/env bash
# tocsin on PostgreSQL, in the shape users run it: every new incident
# escalates and its first page goes to a webhook at once. Starts a
# throwaway PostgreSQL (Debian's postgresql, tests/interop/postgres-cluster.sh)
# and the release tocsin, then measures:
#   1. intake: wrk (bench/events.lua, PagerDuty Events v2 triggers, a new
#      dedup_key per request) for RUN_SECONDS at CONNECTIONS connections
#      against 1 replica, then against 3 replicas at once (one wrk each);
#      events/s and p99, the 3 replicas' summed;
#   2. alert to first page: SAMPLES alerts one at a time; from sending each
#      to the webhook receiving its first page, p50 and p99;
#   3. takeover: SIGKILL the replica that leads (holds the singleton lock)
#      and time until a survivor's /readyz says it leads, TAKEOVERS times.
# Each run uses a fresh database. The same on sled, for comparison:
# bench/cpu-per-event.sh and docs/benchmarks.md.
#
# Usage: bench/postgres.sh
#   TOCSIN_BIN=/path/to/tocsin   use this (release) binary instead of building
#   RUN_SECONDS=5 CONNECTIONS=8 SAMPLES=100 TAKEOVERS=5
# Needs wrk (installed with apt-get if missing and we are root), python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
RUN_SECONDS="${RUN_SECONDS:-5}"
CONNECTIONS="${CONNECTIONS:-8}"
SAMPLES="${SAMPLES:-100}"
TAKEOVERS="${TAKEOVERS:-5}"
source "$REPO/tests/interop/lib.sh"

command -v wrk >/dev/null || need_command wrk wrk
tocsin_release_bin

TMP="$(mktemp -d "${WORK_DIR:-/var/tmp}/tocsin-pg-bench.XXXXXX")"
chmod 755 "$TMP"
mkdir -p "$TMP/pg"
read -r PG_PORT RECV_PORT <<<"$(free_ports 2)"
ADMIN="$(bash "$REPO/tests/interop/postgres-cluster.sh" start "$TMP/pg" "$PG_PORT")" \
    || fail "could not start PostgreSQL"
trap 'bash "$REPO/tests/interop/postgres-cluster.sh" stop "$TMP/pg" >/dev/null 2>&1 || true; cleanup' EXIT
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"

# The webhook receiver: when each page arrived.
start_page_receiver "$RECV_PORT" "$TMP/pages.jsonl"

DB_SEQ=0
# Sets DB_URL to a new, empty database.
new_database() {
    DB_SEQ=$((DB_SEQ + 1))
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tocsin "bench$DB_SEQ"
    DB_URL="postgres://tocsin@127.0.0.1:$PG_PORT/bench$DB_SEQ"
}

REPLICAS=()
PORTS=()
start_replicas() { # n url
    local n="$1" url="$2" i port
    REPLICAS=()
    PORTS=()
    for ((i = 0; i < n; i++)); do
        port="$(free_port)"
        mkdir -p "$TMP/r$DB_SEQ-$i"
        cat >"$TMP/r$DB_SEQ-$i/tocsin.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
backend = "postgres"
url = "$url"
pool_size = 8
[api]
token = "bench-api-token"
[log]
level = "warn"
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[[users]]
name = "alice"
webhook = { url = "http://127.0.0.1:$RECV_PORT/alice" }
contact_methods = [{ kind = "webhook" }]
[[users]]
name = "bob"
webhook = { url = "http://127.0.0.1:$RECV_PORT/bob" }
contact_methods = [{ kind = "webhook" }]
[[escalation_policies]]
name = "default"
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "5m"
[[escalation_policies.steps]]
targets = [{ user = "bob" }]
delay = "10m"
[[services]]
name = "bench"
escalation_policy = "default"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "bench-pagerduty-key"
service = "bench"
TOML
        "$TOCSIN_BIN" serve --config "$TMP/r$DB_SEQ-$i/tocsin.toml" >"$TMP/replica-$DB_SEQ-$i.log" 2>&1 &
        REPLICAS+=($!)
        PIDS+=($!)
        PORTS+=("$port")
    done
    for ((i = 0; i < n; i++)); do
        wait_http "replica $i" "http://127.0.0.1:${PORTS[$i]}/readyz" "${REPLICAS[$i]}"
    done
}
stop_replicas() {
    local p
    for p in "${REPLICAS[@]}"; do stop "$p"; done
}

# --- 1. intake --------------------------------------------------------------
intake() { # replicas
    local n="$1" i
    new_database
    start_replicas "$n" "$DB_URL"
    : >"$TMP/pages.jsonl"
    for ((i = 0; i < n; i++)); do
        BENCH_MODE=pagerduty BENCH_KEY=bench-pagerduty-key BENCH_PREFIX="r$i" \
            wrk -t1 -c"$CONNECTIONS" -d"${RUN_SECONDS}s" --timeout 10s -s "$HERE/events.lua" \
            "http://127.0.0.1:${PORTS[$i]}" >"$TMP/wrk-$n-$i.txt" 2>&1 &
        WRKS[$i]=$!
    done
    for ((i = 0; i < n; i++)); do wait "${WRKS[$i]}"; done
    python3 - "$n" "$TMP"/wrk-"$n"-*.txt <<'EOF'
import json, sys
n, files = int(sys.argv[1]), sys.argv[2:]
rs = [json.loads(l.split(" ", 1)[1]) for f in files for l in open(f) if l.startswith("BENCH_RESULT")]
bad = sum(r["err_status"] + r["err_connect"] + r["err_timeout"] for r in rs)
print(f"intake, {n} replica(s): {sum(r['rps'] for r in rs):,.0f} events/s, "
      f"p99 {max(r['p99_ms'] for r in rs):.1f} ms (worst replica), p50 {max(r['p50_ms'] for r in rs):.1f} ms, errors {bad}")
EOF
    sleep 1
    stop_replicas
}
intake 1
intake 3

# --- 2. alert to first page -------------------------------------------------
new_database
start_replicas 3 "$DB_URL"
: >"$TMP/pages.jsonl"
python3 - "$SAMPLES" "${PORTS[@]}" "$TMP/pages.jsonl" <<'EOF'
import json, sys, time, urllib.request
n, ports, pages = int(sys.argv[1]), sys.argv[2:-1], sys.argv[-1]
lat = []
for i in range(n):
    body = json.dumps({"routing_key": "bench-pagerduty-key", "event_action": "trigger", "dedup_key": f"lat-{i}",
                       "payload": {"summary": f"latency {i}", "source": "bench", "severity": "critical"}}).encode()
    port = ports[i % len(ports)]
    seen = sum(1 for _ in open(pages))
    sent = time.time()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v2/enqueue", data=body,
                           headers={"content-type": "application/json"}), timeout=10).read()
    deadline = sent + 10
    while time.time() < deadline:
        recs = [json.loads(l) for l in open(pages)][seen:]
        if recs:
            lat.append((recs[0]["at"] - sent) * 1000)
            break
        time.sleep(0.001)
    else:
        sys.exit(f"no page for alert {i} within 10 s")
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100))]
print(f"alert to first page (3 replicas, round-robin, {n} alerts): p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1]:.1f} ms")
EOF

# --- 3. takeover ------------------------------------------------------------
leader() {
    local i
    for i in "${!PORTS[@]}"; do
        kill -0 "${REPLICAS[$i]}" 2>/dev/null || continue
        if curl -fsS "http://127.0.0.1:${PORTS[$i]}/readyz" 2>/dev/null | grep -q '"leader":true'; then
            echo "$i"
            return 0
        fi
    done
    return 1
}
TIMES=()
for ((t = 0; t < TAKEOVERS; t++)); do
    deadline=$((SECONDS + 10))
    until L="$(leader)"; do
        ((SECONDS < deadline)) || fail "no leader"
        sleep 0.05
    done
    start_ns=$(date +%s%N)
    kill -9 "${REPLICAS[$L]}"
    wait "${REPLICAS[$L]}" 2>/dev/null || true
    until leader >/dev/null; do sleep 0.02; done
    TIMES+=($((($(date +%s%N) - start_ns) / 1000000)))
    # Bring the killed one back as a follower.
    "$TOCSIN_BIN" serve --config "$TMP/r$DB_SEQ-$L/tocsin.toml" >>"$TMP/replica-$DB_SEQ-$L.log" 2>&1 &
    REPLICAS[$L]=$!
    PIDS+=($!)
    wait_http "replica $L" "http://127.0.0.1:${PORTS[$L]}/readyz" "${REPLICAS[$L]}"
done
sorted="$(printf '%s\n' "${TIMES[@]}" | sort -n | tr '\n' ' ')"
echo "takeover after SIGKILL of the leader ($TAKEOVERS times): ${sorted}ms"
stop_replicas
