#!/usr/bin/env bash
# Failover test: a throwaway PostgreSQL (Debian's postgresql) and 3 tocsin
# replicas on loopback ports, all on one database. Alerts go round-robin to
# the three (a sender whose replica refuses the connection tries the next,
# as senders retry) while every incident escalates through 1 s, 2 s and 3 s
# steps to webhooks. Mid-escalation the replica holding the singleton lock
# and one other are SIGKILLed. Then:
#   - every alert that got a 2xx is stored once (events and incidents);
#   - every incident's three steps paged (each page key delivered at least
#     once), and a key delivered twice is only one that was in flight on a
#     killed replica (the at-least-once window the README documents);
#   - a survivor takes the lead (its /readyz says "leader": true), within
#     seconds (the time is printed: docs/benchmarks.md);
#   - the survivor keeps serving intake and the API.
#
# Usage: tests/interop/failover.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   ALERTS=30                    alerts sent in all
#   KEEP_TMP=1                   keep the temp dir (configs, logs)
# Needs: curl, python3, Debian's postgresql (see postgres-cluster.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
START_SECONDS=$SECONDS
ALERTS="${ALERTS:-30}"

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-failover.XXXXXX")"
chmod 755 "$TMP"
PG_DIR="$TMP/pg"
mkdir -p "$PG_DIR"
read -r PG_PORT RECV_PORT P1 P2 P3 <<<"$(free_ports 5)"
PORTS=("$P1" "$P2" "$P3")
URL="$(bash "$HERE/postgres-cluster.sh" start "$PG_DIR" "$PG_PORT")" \
    || fail "could not start PostgreSQL"
stop_pg() { bash "$HERE/postgres-cluster.sh" stop "$PG_DIR" >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
log "PostgreSQL on port $PG_PORT"

# --- the webhook receiver: every POST as a JSON line ------------------------
start_page_receiver "$RECV_PORT" "$TMP/pages.jsonl"
RECV="http://127.0.0.1:$RECV_PORT"

# --- three replicas ---------------------------------------------------------
KEY="interop-failover-key"
for i in 0 1 2; do
    port="${PORTS[$i]}"
    mkdir -p "$TMP/r$i"
    cat >"$TMP/r$i/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[storage]
backend = "postgres"
url = "$URL"
pool_size = 4

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[notify]
initial_backoff = "200ms"
max_backoff = "1s"
request_timeout = "2s"

[intake]
max_new_incidents_per_minute = 1000

[[services]]
name = "db"
escalation_policy = "steps"

[[integrations]]
name = "pd"
kind = "pagerduty"
key = "$KEY"
service = "db"

[[users]]
name = "alice"
webhook = { url = "$RECV/alice" }
contact_methods = [{ kind = "webhook" }]
[[users]]
name = "bob"
webhook = { url = "$RECV/bob" }
contact_methods = [{ kind = "webhook" }]
[[users]]
name = "carol"
webhook = { url = "$RECV/carol" }
contact_methods = [{ kind = "webhook" }]

[[escalation_policies]]
name = "steps"
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "1s"
[[escalation_policies.steps]]
targets = [{ user = "bob" }]
delay = "2s"
[[escalation_policies.steps]]
targets = [{ user = "carol" }]
delay = "3s"
EOF
done

REPLICA_PIDS=()
start_replica() { # index
    local i="$1"
    "$TOCSIN_BIN" serve --config "$TMP/r$i/tocsin.toml" >>"$TMP/replica$i.log" 2>&1 &
    REPLICA_PIDS[$i]=$!
    PIDS+=($!)
}
for i in 0 1 2; do
    start_replica "$i"
done
for i in 0 1 2; do
    wait_http "replica $i" "http://127.0.0.1:${PORTS[$i]}/readyz" "${REPLICA_PIDS[$i]}"
done
pass "3 replicas ready on one database"

leader_index() {
    local i
    for i in 0 1 2; do
        if curl -fsS "http://127.0.0.1:${PORTS[$i]}/readyz" 2>/dev/null \
            | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("leader") else 1)'; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

deadline=$((SECONDS + 10))
until LEADER="$(leader_index)"; do
    ((SECONDS < deadline)) || fail "no replica took the lead within 10 s"
    sleep 0.2
done
leaders=0
for i in 0 1 2; do
    curl -fsS "http://127.0.0.1:${PORTS[$i]}/metrics" -H "authorization: Bearer interop-api-token" \
        | grep -q '^tocsin_leader 1' && leaders=$((leaders + 1))
done
[[ $leaders -eq 1 ]] || fail "$leaders replicas say they lead"
pass "replica $LEADER leads; the others follow"
VICTIM=$(((LEADER + 1) % 3))
SURVIVOR=$(((LEADER + 2) % 3))

# --- alerts round-robin, and two SIGKILLs mid-escalation --------------------
cat >"$TMP/send.py" <<'EOF'
import json, sys, time, urllib.request, urllib.error
ports, n, key, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ok = []
for i in range(n):
    body = json.dumps({"routing_key": key, "event_action": "trigger", "dedup_key": f"fo-{i}",
                       "payload": {"summary": f"failover {i}", "source": "interop", "severity": "critical"}}).encode()
    for attempt in range(len(ports) * 3):
        port = ports[(i + attempt) % len(ports)]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/enqueue", data=body,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if 200 <= r.status < 300:
                    ok.append(f"fo-{i}")
                    break
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.05)
    time.sleep(0.15)
json.dump(ok, open(out, "w"))
EOF
python3 "$TMP/send.py" "$P1,$P2,$P3" "$ALERTS" "$KEY" "$TMP/accepted.json" &
SENDER=$!
PIDS+=($SENDER)
sleep 2.5
KILLED_AT="$(python3 -c 'import time; print(time.time())')"
kill -9 "${REPLICA_PIDS[$LEADER]}" "${REPLICA_PIDS[$VICTIM]}"
wait "${REPLICA_PIDS[$LEADER]}" 2>/dev/null || true
wait "${REPLICA_PIDS[$VICTIM]}" 2>/dev/null || true
log "SIGKILLed the leader (replica $LEADER) and replica $VICTIM mid-escalation"

SURV="http://127.0.0.1:${PORTS[$SURVIVOR]}"
TAKEOVER=""
for _ in $(seq 1 100); do
    if curl -fsS "$SURV/readyz" 2>/dev/null \
        | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("leader") else 1)'; then
        TAKEOVER="$(python3 -c "import time; print(round(time.time() - $KILLED_AT, 2))")"
        break
    fi
    sleep 0.1
done
[[ -n "$TAKEOVER" ]] || fail "the survivor did not take the lead within 10 s"
pass "the survivor (replica $SURVIVOR) took the lead ${TAKEOVER}s after the SIGKILL"

wait "$SENDER" || fail "the alert sender failed"
ACCEPTED="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TMP/accepted.json")"
log "$ACCEPTED of $ALERTS alerts got a 2xx"
[[ "$ACCEPTED" -eq "$ALERTS" ]] || fail "only $ACCEPTED of $ALERTS alerts were accepted by some replica"

# --- every step paged: wait up to 60 s (a lease of a killed replica runs out
# after 30 s, and its pages go out then) ------------------------------------
cat >"$TMP/check.py" <<'EOF'
import collections, json, sys
pages, accepted, killed_at = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3])
final = len(sys.argv) > 4
recs = [json.loads(l) for l in open(pages) if l.strip()]
by_key = collections.defaultdict(list)
for r in recs:
    by_key[r["key"]].append(r["at"])
steps = collections.defaultdict(set)
for k in by_key:
    # INC-n/g0/r0/sS/user:NAME/m0/uid
    parts = k.split("/")
    steps[parts[0]].add((parts[3], parts[4]))
want = {("s0", "user:alice"), ("s1", "user:bob"), ("s2", "user:carol")}
complete = [i for i, s in steps.items() if want <= s]
if not final:
    sys.exit(0 if len(complete) == len(accepted) else 1)
print(f"{len(recs)} deliveries of {len(by_key)} page keys for {len(steps)} incidents; {len(complete)} with all three steps")
bad = [i for i, s in steps.items() if not want <= s]
assert not bad, f"incidents missing steps: {bad}"
assert len(steps) == len(accepted), f"{len(steps)} incidents paged for {len(accepted)} alerts"
dups = {k: ts for k, ts in by_key.items() if len(ts) > 1}
for k, ts in dups.items():
    first = min(ts)
    assert first <= killed_at + 1 and first >= killed_at - 5, \
        f"{k} delivered {len(ts)} times, first {first - killed_at:+.2f}s from the kill: outside the in-flight window"
    assert len(ts) == 2, f"{k} delivered {len(ts)} times"
print(f"{len(dups)} page keys delivered twice, each in flight on a killed replica")
EOF
deadline=$((SECONDS + 60))
until python3 "$TMP/check.py" "$TMP/pages.jsonl" "$TMP/accepted.json" "$KILLED_AT"; do
    ((SECONDS < deadline)) || {
        python3 "$TMP/check.py" "$TMP/pages.jsonl" "$TMP/accepted.json" "$KILLED_AT" final || true
        fail "not every step of every incident was paged within 60 s"
    }
    sleep 0.5
done
sleep 2 # late duplicates, if any, would arrive now
SUMMARY="$(python3 "$TMP/check.py" "$TMP/pages.jsonl" "$TMP/accepted.json" "$KILLED_AT" final 2>&1)" \
    || fail "page check: $SUMMARY"
pass "every step of every incident paged: $SUMMARY"

# --- stored once, and the survivor serves -----------------------------------
STATS="$(curl -fsS "$SURV/v1/stats" -H "authorization: Bearer interop-api-token")"
python3 - "$STATS" "$ALERTS" <<'EOF' || fail "stats: $STATS"
import json, sys
s, n = json.loads(sys.argv[1]), int(sys.argv[2])
assert s["events"] == n, f"{s['events']} events stored for {n} accepted alerts"
assert s["incidents"] == n, f"{s['incidents']} incidents for {n} dedup keys"
EOF
pass "every accepted alert stored once: $STATS"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SURV/v2/enqueue" -H 'content-type: application/json' \
    -d "{\"routing_key\":\"$KEY\",\"event_action\":\"trigger\",\"dedup_key\":\"after\",\"payload\":{\"summary\":\"after the failover\",\"source\":\"interop\",\"severity\":\"critical\"}}")"
[[ "$code" == 202 ]] || fail "the survivor answered $code to a new alert"
pass "the survivor keeps serving intake"

pass "failover with 3 replicas on PostgreSQL ($((SECONDS - START_SECONDS))s); takeover ${TAKEOVER}s"
