#!/usr/bin/env bash
# CPU per durable intake event, by thread: runs the release tocsin on a fresh
# data directory, loads it with wrk (bench/events.lua, PagerDuty Events v2
# triggers, a new dedup_key per request) at 1 and 8 connections, and reads
# the CPU time of each of tocsin's threads from /proc before and after.
# Threads are grouped by name without their number (sled-io-3 -> sled-io-),
# so the table shows where each event's CPU goes: the HTTP workers
# (tokio-rt-worker), the writer thread (tocsin-writer), sled's IO pool.
#
# Usage: bench/cpu-per-event.sh
#   TOCSIN_BIN=/path/to/tocsin   use this (release) binary instead of building
#   RUN_SECONDS=5                length of each run
#   CONNECTIONS="1 8"            the runs
#   WORK_DIR=/var/tmp            where the data directory goes (on disk)
#   PAGING=1                     the example config's shape: every new incident
#                                escalates through a two-step policy over an
#                                on-call schedule, and its first page is
#                                delivered by the `log` contact method (a WARN
#                                line, recorded as delivered on the timeline);
#                                info logging, like tocsin.example.toml
# Needs wrk (installed with apt-get if missing and we are root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
RUN_SECONDS="${RUN_SECONDS:-5}"
CONNECTIONS="${CONNECTIONS:-1 8}"
source "$REPO/tests/interop/lib.sh"

command -v wrk >/dev/null || need_command wrk wrk
tocsin_release_bin

TMP="$(mktemp -d "${WORK_DIR:-/var/tmp}/tocsin-cpu.XXXXXX")"
PORT="$(free_port)"
if [[ "${PAGING:-0}" == 1 ]]; then
    # tocsin.example.toml's users, schedule and policy; log pages.
    cat >"$TMP/tocsin.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
path = "$TMP/data"
[log]
format = "human"
level = "info"
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[[users]]
name = "alice"
contact_methods = [{ kind = "log" }]
[[users]]
name = "bob"
contact_methods = [{ kind = "log" }]
[[users]]
name = "carol"
contact_methods = [{ kind = "log" }]
[[schedules]]
name = "primary"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-01-05T09:00:00"
handoff = "0 0 9 * * Mon"
[[escalation_policies]]
name = "default"
repeat = 2
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }]
delay = "5m"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }, { user = "carol" }]
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
else
    cat >"$TMP/tocsin.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
path = "$TMP/data"
[log]
level = "warn"
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[[services]]
name = "bench"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "bench-pagerduty-key"
service = "bench"
TOML
fi
"$TOCSIN_BIN" serve --config "$TMP/tocsin.toml" >"$TMP/tocsin.log" 2>&1 &
TOCSIN_PID=$!
PIDS+=("$TOCSIN_PID")
wait_http tocsin "http://127.0.0.1:$PORT/readyz" "$TOCSIN_PID"

ticks=$(getconf CLK_TCK)
# Prints "name ticks" per thread group (utime + stime).
threads() {
    for t in /proc/"$TOCSIN_PID"/task/*; do
        printf '%s %s\n' "$(sed 's/[0-9]*$//' "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}

echo "| connections | events/s | p50 | p99 | CPU µs per event | by thread (µs per event) |"
echo "| --- | --- | --- | --- | --- | --- |"
for c in $CONNECTIONS; do
    t=1; ((c > 1)) && t=2
    threads >"$TMP/before"
    # Each run its own keys: otherwise a later run's events append to the
    # incidents an earlier run opened, and page nobody.
    BENCH_MODE=pagerduty BENCH_KEY=bench-pagerduty-key BENCH_PREFIX="c$c-" \
        wrk -t"$t" -c"$c" -d"${RUN_SECONDS}s" --latency -s "$HERE/events.lua" \
        "http://127.0.0.1:$PORT/v2/enqueue" >"$TMP/wrk.$c" 2>&1 || { cat "$TMP/wrk.$c"; fail "wrk failed"; }
    # Pages are delivered after the 202: let the last ones go out.
    [[ "${PAGING:-0}" == 1 ]] && sleep 1
    threads >"$TMP/after"
    rps="$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.$c")"
    p50="$(awk '$1 == "50%" {print $2}' "$TMP/wrk.$c")"
    p99="$(awk '$1 == "99%" {print $2}' "$TMP/wrk.$c")"
    join "$TMP/before" "$TMP/after" | awk -v rps="$rps" -v secs="$RUN_SECONDS" -v hz="$ticks" \
        -v c="$c" -v p50="$p50" -v p99="$p99" '
        { d = ($3 - $2) * 1e6 / hz / (rps * secs); total += d; if (d >= 0.5) { parts = parts sprintf("%s%s %.0f", sep, $1, d); sep = ", " } }
        END { printf "| %s | %.0f | %s | %s | %.0f | %s |\n", c, rps, p50, p99, total, parts }'
done
if [[ "${PAGING:-0}" == 1 ]]; then
    answered="$(awk '/requests in/ {n += $1} END {print n}' "$TMP"/wrk.*)"
    pages="$(grep -c 'PAGE' "$TMP/tocsin.log" || true)"
    echo "requests answered: $answered, pages delivered (PAGE lines): $pages"
    # wrk counts requests it sent; the last few may be cut off unanswered.
    ((pages + 16 >= answered)) || fail "only $pages pages for $answered answered requests"
fi
