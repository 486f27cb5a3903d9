#!/usr/bin/env bash
# tocsin and Debian's prometheus-alertmanager side by side, in one run, on
# one machine, with one load tool (wrk + bench/events.lua):
#
#   1. intake: one event per request, 1 and 8 connections, 10 s each.
#      tocsin: PagerDuty Events v2 triggers to /v2/enqueue, a new dedup_key
#      per request (every one opens an incident; every 2xx is fsynced).
#      Alertmanager: POST /api/v2/alerts, one alert per request, a new label
#      value per request (kept in memory).
#      After each tocsin run the server is SIGKILLed and restarted on the
#      same data directory: every 2xx must be in the store.
#   2. alert storm: 10,000 triggers for ONE dedup key to tocsin, whose
#      service pages a user by webhook (a counting receiver on 127.0.0.1):
#      exactly one incident with event_count 10000, exactly one page.
#   3. memory: tocsin's resident memory idle and with 100,000 open incidents
#      (and after a restart on that data), and Alertmanager's with 100,000
#      active alerts, for context.
#
# Usage: bench/compare-alertmanager.sh
#   TOCSIN_BIN=/path/to/tocsin   use this (release) binary instead of building
#   RUN_SECONDS=10               length of each intake run
#   STORM_EVENTS=10000           events in the storm
#   MEMORY_INCIDENTS=100000      open incidents for the memory figure
#   WORK_DIR=/var/tmp            where data directories go (on disk)
#   KEEP_TMP=1                   keep configs, logs, data and raw wrk output
# Needs root for apt-get (wrk, prometheus-alertmanager) if they are missing.
# Prints Markdown tables at the end (also saved as results.md in the temp dir).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LUA="$HERE/events.lua"
RUN_SECONDS="${RUN_SECONDS:-10}"
STORM_EVENTS="${STORM_EVENTS:-10000}"
MEMORY_INCIDENTS="${MEMORY_INCIDENTS:-100000}"
START_SECONDS=$SECONDS

source "$REPO/tests/interop/lib.sh"
# The bench's log lines carry the elapsed time.
log() { printf '[bench %4ds] %s\n' "$((SECONDS - START_SECONDS))" "$*"; }

# --- tools ------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v curl >/dev/null || need+=(curl)
if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
command -v python3 >/dev/null || fail "python3 is required"

tocsin_release_bin

TMP="$(mktemp -d "${WORK_DIR:-/var/tmp}/tocsin-bench.XXXXXX")"
RESULTS="$TMP/results.md"
KEY="bench-pagerduty-key"

log "tocsin: $TOCSIN_BIN ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
log "$(prometheus-alertmanager --version 2>&1 | head -n 1)"
log "$(wrk --version 2>&1 | head -n 1)"
log "$(nproc) cores; $(free -g | awk '/^Mem:/ {print $2}') GiB; data in $TMP ($(df -T "$TMP" | awk 'NR==2 {print $2}'))"

# The load average, and how many compilers other work had running then (the
# two cores are shared; the load average also counts this script's last phase).
loadavg() { echo "$(cut -d' ' -f1-3 /proc/loadavg), rustc: $(ps -eo comm= | awk '$1 == "rustc" {n++} END {print n + 0}')"; }
rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }


# tocsin_config DIR PORT [WEBHOOK_URL]: a pagerduty integration; with a
# webhook URL, the service pages alice (webhook) through a one-step policy.
tocsin_config() {
    local dir="$1" port="$2" hook="${3:-}"
    {
        cat <<EOF
[server]
listen = "127.0.0.1:$port"
[storage]
path = "$dir/data"
[api]
token = "bench-api-token"
[log]
level = "warn"
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
EOF
        if [[ -n "$hook" ]]; then
            cat <<EOF
[[users]]
name = "alice"
webhook = { url = "$hook" }
contact_methods = [{ kind = "webhook" }]
[[escalation_policies]]
name = "storm"
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "1h"
[[services]]
name = "bench"
escalation_policy = "storm"
EOF
        else
            printf '[[services]]\nname = "bench"\n'
        fi
        cat <<EOF
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "$KEY"
service = "bench"
EOF
    } >"$dir/tocsin.toml"
}

TOCSIN_PID=""
start_tocsin() { # dir port
    "$TOCSIN_BIN" serve --config "$1/tocsin.toml" >>"$1/tocsin.log" 2>&1 &
    TOCSIN_PID=$!
    PIDS+=("$TOCSIN_PID")
    wait_http tocsin "http://127.0.0.1:$2/readyz" "$TOCSIN_PID"
}

AM_PID=""
start_am() { # dir port
    local dir="$1" port="$2"
    cat >"$dir/alertmanager.yml" <<EOF
route:
  receiver: blackhole
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: blackhole
EOF
    prometheus-alertmanager --config.file="$dir/alertmanager.yml" --storage.path="$dir/am-data" \
        --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
        --web.external-url="http://127.0.0.1:$port" --log.level=warn >"$dir/alertmanager.log" 2>&1 &
    AM_PID=$!
    PIDS+=("$AM_PID")
    wait_http alertmanager "http://127.0.0.1:$port/-/ready" "$AM_PID"
}

# field JSON_LINE NAME
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
result_line() { sed -n 's/^BENCH_RESULT //p' "$1" | tail -n 1; }

# wrk_run OUT THREADS CONNS MODE PREFIX URL: a timed run of RUN_SECONDS.
wrk_run() {
    local out="$1" t="$2" c="$3" mode="$4" prefix="$5" url="$6"
    echo "BENCH_MODE=$mode BENCH_KEY=$KEY wrk -t$t -c$c -d${RUN_SECONDS}s --latency -s bench/events.lua $url" >"$out.cmd"
    BENCH_MODE="$mode" BENCH_KEY="$KEY" BENCH_PREFIX="$prefix" BENCH_CAP=0 \
        wrk -t"$t" -c"$c" -d"${RUN_SECONDS}s" --latency -s "$LUA" "$url" >"$out" 2>&1 \
        || { cat "$out"; fail "wrk failed"; }
}

# wrk_capped OUT THREADS CONNS MODE PREFIX CAP URL: exactly CAP events, then
# SIGINT to wrk once every thread is done. Sets CAPPED_SECONDS (wall clock
# from wrk's start to the last thread done, 20 ms resolution).
wrk_capped() {
    local out="$1" t="$2" c="$3" mode="$4" prefix="$5" cap="$6" url="$7"
    local done_dir t0 t1 pid
    done_dir="$(mktemp -d "$TMP/done.XXXXXX")"
    echo "BENCH_MODE=$mode BENCH_KEY=$KEY BENCH_CAP=$cap BENCH_THREADS=$t wrk -t$t -c$c -d600s --latency -s bench/events.lua $url" >"$out.cmd"
    t0=$(date +%s.%N)
    BENCH_MODE="$mode" BENCH_KEY="$KEY" BENCH_PREFIX="$prefix" BENCH_CAP="$cap" \
        BENCH_THREADS="$t" BENCH_DONE_DIR="$done_dir" \
        wrk -t"$t" -c"$c" -d600s --latency -s "$LUA" "$url" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    while kill -0 "$pid" 2>/dev/null; do
        if (($(find "$done_dir" -type f | wc -l) >= t)); then
            t1=$(date +%s.%N)
            kill -INT "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.02
    done
    wait "$pid" 2>/dev/null || true
    [[ -n "${t1:-}" ]] || { cat "$out"; fail "wrk ended before sending $cap events"; }
    CAPPED_SECONDS=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}

stats() { curl -fsS -H "Authorization: Bearer bench-api-token" "http://127.0.0.1:$1/v1/stats"; }

{
    echo "# Results $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "tocsin $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'); $(prometheus-alertmanager --version 2>&1 | head -n 1); $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2); $(nproc) cores"
} >"$RESULTS"

# --- 1. intake side by side --------------------------------------------------
log "== intake: ${RUN_SECONDS}s per run, one event per request"
INTAKE_ROWS=()
for conns in 1 8; do
    threads=$((conns == 1 ? 1 : 2))

    # tocsin
    dir="$TMP/intake-tocsin-c$conns"
    mkdir -p "$dir"
    port=$(free_port)
    tocsin_config "$dir" "$port"
    start_tocsin "$dir" "$port"
    load=$(loadavg)
    log "tocsin, $conns connection(s) (load average before: $load)"
    wrk_run "$dir/wrk.out" "$threads" "$conns" pagerduty "c$conns" "http://127.0.0.1:$port"
    r=$(result_line "$dir/wrk.out")
    [[ -n "$r" ]] || { cat "$dir/wrk.out"; fail "no result from wrk"; }
    errs=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(sum(v for k,v in r.items() if k.startswith("err_")))' "$r")
    [[ "$errs" == 0 ]] || { cat "$dir/wrk.out"; fail "tocsin: wrk saw errors or non-2xx answers: $r"; }
    kill -9 "$TOCSIN_PID"
    wait "$TOCSIN_PID" 2>/dev/null || true
    start_tocsin "$dir" "$port"
    stored=$(field "$(stats "$port")" events)
    acked=$(field "$r" requests)
    ((stored >= acked)) || fail "tocsin lost events after SIGKILL: $acked answered 202, $stored stored"
    pass "tocsin c$conns: $(field "$r" rps) req/s, p50 $(field "$r" p50_ms) ms, p99 $(field "$r" p99_ms) ms; $acked x 202, $stored stored after SIGKILL"
    INTAKE_ROWS+=("| tocsin \`/v2/enqueue\` | $conns | $(field "$r" rps) | $(field "$r" p50_ms) | $(field "$r" p99_ms) | $(field "$r" max_ms) | $acked | $stored after SIGKILL | $load |")
    stop "$TOCSIN_PID"

    # Alertmanager
    dir="$TMP/intake-am-c$conns"
    mkdir -p "$dir"
    port=$(free_port)
    start_am "$dir" "$port"
    load=$(loadavg)
    log "alertmanager, $conns connection(s) (load average before: $load)"
    wrk_run "$dir/wrk.out" "$threads" "$conns" alertmanager "c$conns" "http://127.0.0.1:$port"
    r=$(result_line "$dir/wrk.out")
    [[ -n "$r" ]] || { cat "$dir/wrk.out"; fail "no result from wrk"; }
    errs=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(sum(v for k,v in r.items() if k.startswith("err_")))' "$r")
    [[ "$errs" == 0 ]] || { cat "$dir/wrk.out"; fail "alertmanager: wrk saw errors or non-2xx answers: $r"; }
    received=$(curl -fsS "http://127.0.0.1:$port/metrics" \
        | awk '/^alertmanager_alerts_received_total/ {s += $2} END {printf "%d", s}')
    acked=$(field "$r" requests)
    ((received >= acked)) || fail "alertmanager received $received alerts, wrk counted $acked answers"
    pass "alertmanager c$conns: $(field "$r" rps) req/s, p50 $(field "$r" p50_ms) ms, p99 $(field "$r" p99_ms) ms; $acked x 200, $received received (in memory)"
    INTAKE_ROWS+=("| Alertmanager \`/api/v2/alerts\` | $conns | $(field "$r" rps) | $(field "$r" p50_ms) | $(field "$r" p99_ms) | $(field "$r" max_ms) | $acked | $received in memory | $load |")
    stop "$AM_PID"
done
{
    echo
    echo "## Intake (${RUN_SECONDS} s per run)"
    echo
    echo "| server | connections | requests/s | p50 ms | p99 ms | max ms | 2xx | kept | load average before |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${INTAKE_ROWS[@]}"
} >>"$RESULTS"

# --- 2. alert storm ------------------------------------------------------------
log "== alert storm: $STORM_EVENTS triggers for one dedup key, 8 connections"
dir="$TMP/storm"
mkdir -p "$dir"
hook_port=$(free_port)
cat >"$dir/receiver.py" <<'EOF'
# Counts POSTs (pages) and answers 200; GET returns the count as JSON.
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
pages = []


class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with lock:
            pages.append({"key": self.headers.get("idempotency-key"), "body": json.loads(body or b"null")})
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            out = json.dumps({"count": len(pages), "keys": [p["key"] for p in pages]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$dir/receiver.py" "$hook_port" &
PIDS+=("$!")
RECEIVER_PID=$!
wait_http receiver "http://127.0.0.1:$hook_port/" "$RECEIVER_PID"
port=$(free_port)
tocsin_config "$dir" "$port" "http://127.0.0.1:$hook_port/page"
start_tocsin "$dir" "$port"
load=$(loadavg)
wrk_capped "$dir/wrk.out" 2 8 storm "storm-db-1" "$STORM_EVENTS" "http://127.0.0.1:$port"
r=$(result_line "$dir/wrk.out")
storm_s=$(python3 -c "print(f'{$(field "$r" duration_s):.2f}')")
# Give the outbox time to deliver (and to deliver twice, if it would).
deadline=$((SECONDS + 15))
until (($(field "$(curl -fsS "http://127.0.0.1:$hook_port/")" count) >= 1)); do
    ((SECONDS < deadline)) || fail "no page reached the receiver within 15 s"
    sleep 0.1
done
sleep 3
pages=$(field "$(curl -fsS "http://127.0.0.1:$hook_port/")" count)
check=$(curl -fsS -H "Authorization: Bearer bench-api-token" "http://127.0.0.1:$port/v1/incidents?limit=1000" | python3 -c '
import json, sys
incs = json.load(sys.stdin)["incidents"]
print(len(incs), incs[0]["event_count"] if incs else 0, incs[0]["key"] if incs else "-", incs[0]["status"] if incs else "-")')
read -r n_inc ev_count inc_key inc_status <<<"$check"
notif=$(curl -fsS -H "Authorization: Bearer bench-api-token" "http://127.0.0.1:$port/v1/incidents/$inc_key/notifications" | python3 -c '
import json, sys
b = json.load(sys.stdin)
items = b.get("notifications", b) if isinstance(b, dict) else b
print(len(items))' 2>/dev/null || echo "?")
events=$(field "$(stats "$port")" events)
rss_storm=$(rss_kb "$TOCSIN_PID")
stop "$TOCSIN_PID"
stop "$RECEIVER_PID"
[[ "$n_inc" == 1 ]] || fail "storm: expected exactly 1 incident, found $n_inc"
[[ "$ev_count" == "$STORM_EVENTS" ]] || fail "storm: incident event_count is $ev_count, expected $STORM_EVENTS"
[[ "$events" == "$STORM_EVENTS" ]] || fail "storm: $events events stored, expected $STORM_EVENTS"
[[ "$pages" == 1 ]] || fail "storm: the receiver got $pages pages, expected exactly 1"
storm_rate=$(python3 -c "print(round($STORM_EVENTS / $storm_s))")
pass "storm: $STORM_EVENTS events in ${storm_s}s (~$storm_rate/s), 1 incident ($inc_key, $inc_status) with event_count $ev_count, $pages page, $notif notification(s) listed; p50 $(field "$r" p50_ms) ms p99 $(field "$r" p99_ms) ms"
{
    echo
    echo "## Alert storm"
    echo
    echo "| events | connections | seconds | events/s | p50 ms | p99 ms | max ms | incidents | event_count | pages received | notifications listed | load average before |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    echo "| $STORM_EVENTS | 8 | $storm_s | $storm_rate | $(field "$r" p50_ms) | $(field "$r" p99_ms) | $(field "$r" max_ms) | $n_inc | $ev_count | $pages | $notif | $load |"
} >>"$RESULTS"

# --- 3. memory -----------------------------------------------------------------
log "== memory: $MEMORY_INCIDENTS open incidents"
dir="$TMP/memory-tocsin"
mkdir -p "$dir"
port=$(free_port)
tocsin_config "$dir" "$port"
start_tocsin "$dir" "$port"
sleep 1
idle=$(rss_kb "$TOCSIN_PID")
load=$(loadavg)
wrk_capped "$dir/wrk.out" 2 8 pagerduty "mem" "$MEMORY_INCIDENTS" "http://127.0.0.1:$port"
r=$(result_line "$dir/wrk.out")
fill_s=$CAPPED_SECONDS
sleep 2
loaded=$(rss_kb "$TOCSIN_PID")
peak=$(hwm_kb "$TOCSIN_PID")
s=$(stats "$port")
incs=$(field "$s" incidents)
[[ "$incs" == "$MEMORY_INCIDENTS" ]] || fail "memory: $incs incidents stored, expected $MEMORY_INCIDENTS"
open=$(curl -fsS -H "Authorization: Bearer bench-api-token" "http://127.0.0.1:$port/v1/incidents?status=triggered&limit=5" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["incidents"]))')
((open == 5)) || fail "memory: the incidents are not open"
stop "$TOCSIN_PID"
disk=$(du -sk "$dir/data" | cut -f1)
start_tocsin "$dir" "$port"
sleep 1
restarted=$(rss_kb "$TOCSIN_PID")
curl -fsS -o /dev/null -H "Authorization: Bearer bench-api-token" "http://127.0.0.1:$port/v1/incidents?status=triggered&limit=100"
restarted_list=$(rss_kb "$TOCSIN_PID")
stop "$TOCSIN_PID"
per=$(python3 -c "print(f'{($loaded - $idle) / $MEMORY_INCIDENTS:.2f}')")
per_restart=$(python3 -c "print(f'{($restarted - $idle) / $MEMORY_INCIDENTS:.2f}')")
pass "tocsin memory: idle $idle KB; $MEMORY_INCIDENTS open incidents ($fill_s s to send) $loaded KB (peak $peak KB) = $per KB/incident; after restart $restarted KB ($per_restart KB/incident), after listing $restarted_list KB; data $disk KB"

dir="$TMP/memory-am"
mkdir -p "$dir"
port=$(free_port)
start_am "$dir" "$port"
sleep 1
am_idle=$(rss_kb "$AM_PID")
wrk_capped "$dir/wrk.out" 2 8 alertmanager "mem" "$MEMORY_INCIDENTS" "http://127.0.0.1:$port"
am_fill_s=$CAPPED_SECONDS
sleep 2
am_loaded=$(rss_kb "$AM_PID")
am_peak=$(hwm_kb "$AM_PID")
am_alerts=$(curl -fsS "http://127.0.0.1:$port/metrics" \
    | awk '/^alertmanager_alerts\{state=/ {s += $2} END {printf "%d", s}')
stop "$AM_PID"
[[ "$am_alerts" == "$MEMORY_INCIDENTS" ]] || fail "alertmanager holds $am_alerts alerts, expected $MEMORY_INCIDENTS"
am_per=$(python3 -c "print(f'{($am_loaded - $am_idle) / $MEMORY_INCIDENTS:.2f}')")
pass "alertmanager memory: idle $am_idle KB; $am_alerts alerts held (active + unprocessed) ($am_fill_s s to send) $am_loaded KB (peak $am_peak KB) = $am_per KB/alert"
{
    echo
    echo "## Memory ($MEMORY_INCIDENTS open incidents / active alerts)"
    echo
    echo "| server | idle RSS KB | loaded RSS KB | peak (VmHWM) KB | KB per incident/alert | seconds to send | after restart RSS KB | data on disk KB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    echo "| tocsin | $idle | $loaded | $peak | $per | $fill_s | $restarted ($per_restart KB each; $restarted_list after a list call) | $disk |"
    echo "| Alertmanager | $am_idle | $am_loaded | $am_peak | $am_per | $am_fill_s | (alerts are not kept) | - |"
    echo
    echo "load average before the tocsin fill: $load; total run $((SECONDS - START_SECONDS)) s"
} >>"$RESULTS"

echo
cat "$RESULTS"
log "done"
