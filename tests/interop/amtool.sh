#!/usr/bin/env bash
# Interop test: Debian's amtool and prometheus-alertmanager against tocsin,
# with big and truncated alert groups.
#
#  1. amtool straight at tocsin (--alertmanager.url=TOCSIN/hooks/KEY, so it
#     pushes to /hooks/KEY/api/v2/alerts, with Go's zero times): amtool
#     exits 0, one incident titled with the alertname opens, and the on-call
#     user is paged once (by the `webhook` contact method, to a small
#     python3 receiver that records every POST).
#  2. A 1,000-alert group: one alert added to Alertmanager with amtool and
#     999 more in one POST to its /api/v2/alerts, all one alertname with
#     distinct instances. Each alert carries a ~400-byte description, so the
#     webhook body (~700 KB) is past tocsin's general 512 KiB limit and needs
#     the alert webhooks' 16 MiB one. tocsin must hold one incident with the
#     1,000 alerts, page once, and Alertmanager must count no failures.
#  3. max_alerts: a receiver with `max_alerts: 10` gets a 30-alert group.
#     The 20 alerts that sort first resolve while 10 keep firing: the
#     notification lists 10 resolved alerts with truncatedAlerts 20 and says
#     "resolved", and tocsin must keep the incident open (a resolve_held
#     entry). Then the last 10 resolve (a notification of all 10, none left
#     out) and the incident must resolve.
#
# Every webhook receiver in Alertmanager's config also has a second
# webhook_config to the recorder, which sees the same notifications as tocsin
# (same max_alerts), so the script can log their sizes and truncation.
#
# Usage: tests/interop/amtool.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (configs, logs, data)
#   POLL_TIMEOUT=30              seconds to wait for each expected state
# Needs: curl, python3, prometheus-alertmanager (with amtool; installed with
# apt-get if missing and we are root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POLL_TIMEOUT="${POLL_TIMEOUT:-30}"
START_SECONDS=$SECONDS
DIRECT_ALERT=AmtoolDirect
BIG_ALERT=AmtoolBigGroup
BIG_N=1000
TRUNC_ALERT=Truncated
TRUNC_N=30
TRUNC_MAX=10

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# --- 1. Alertmanager and amtool --------------------------------------------
need_command prometheus-alertmanager prometheus-alertmanager
command -v amtool >/dev/null || fail "amtool is missing (it ships in prometheus-alertmanager)"
log "$(prometheus-alertmanager --version 2>&1 | head -n 1)"
log "$(amtool --version 2>&1 | head -n 1)"

# max_alerts in webhook_configs is recent; without it, part 3 is skipped.
TRUNC_SUPPORTED=1
if ! grep -aq 'max_alerts' "$(command -v prometheus-alertmanager)"; then
    TRUNC_SUPPORTED=""
fi

# --- 2. tocsin and the recorder ---------------------------------------------
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-amtool.XXXXXX")"

read -r TOCSIN_PORT AM_PORT RECV_PORT < <(free_ports 3)
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
AM="http://127.0.0.1:$AM_PORT"
RECV="http://127.0.0.1:$RECV_PORT"
DIRECT_KEY="interop-amtool-direct-key-$RANDOM$RANDOM"
BIG_KEY="interop-amtool-group-key-$RANDOM$RANDOM"
TRUNC_KEY="interop-amtool-truncated-key-$RANDOM$RANDOM"

# Records every POST: pages (/page/USER) with their body, Alertmanager
# notifications (/am/NAME) as size, status, alert counts and truncatedAlerts.
# GET /_calls lists them.
cat >"$TMP/recorder.py" <<'EOF'
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls, lock = [], threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        rec = {"path": self.path, "bytes": len(body)}
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if self.path.startswith("/am/") and isinstance(doc, dict):
            alerts = doc.get("alerts") or []
            rec.update(
                status=doc.get("status"),
                alerts=len(alerts),
                firing=sum(a.get("status") == "firing" for a in alerts),
                resolved=sum(a.get("status") == "resolved" for a in alerts),
                truncated=doc.get("truncatedAlerts"),
                instances=[a.get("labels", {}).get("instance") for a in alerts],
            )
        else:
            rec["body"] = doc
        with lock:
            calls.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k != "instances"}), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            out = json.dumps(calls).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF

log "starting the recorder on $RECV"
python3 "$TMP/recorder.py" "$RECV_PORT" >"$TMP/recorder.log" 2>&1 &
RECV_PID=$!
PIDS+=("$RECV_PID")
wait_http recorder "$RECV/_calls" "$RECV_PID"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"

[storage]
path = "$TMP/data"

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[[services]]
name = "direct"
description = "Alerts amtool pushes straight to tocsin"
escalation_policy = "page-oncall"

[[services]]
name = "fleet"
description = "Alertmanager's 1,000-alert group"
escalation_policy = "page-oncall"

[[services]]
name = "truncated"
description = "Alertmanager's max_alerts receiver"
escalation_policy = "page-oncall"

[notify]
initial_backoff = "200ms"
max_backoff = "2s"

[[users]]
name = "alice"
webhook = { url = "$RECV/page/alice" }
contact_methods = [{ kind = "webhook" }]

[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "always-alice"
users = ["alice"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * Mon"

[[escalation_policies]]
name = "page-oncall"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }]
delay = "10m"

[[integrations]]
name = "amtool-direct"
kind = "alertmanager"
key = "$DIRECT_KEY"
service = "direct"

[[integrations]]
name = "am-group"
kind = "alertmanager"
key = "$BIG_KEY"
service = "fleet"

[[integrations]]
name = "am-truncated"
kind = "alertmanager"
key = "$TRUNC_KEY"
service = "truncated"
EOF

start_tocsin "$TOCSIN"
WATCH="tocsin:$TOCSIN_PID recorder:$RECV_PID"
pass "tocsin is ready: $(curl -fsS "$TOCSIN/readyz")"

# --- helpers ----------------------------------------------------------------
# Responses go through files: a 1,000-alert incident is too big for argv.
# GET /v1/incidents into $TMP/incidents.json.
fetch_incidents() {
    curl -fsS -m 10 -o "$TMP/incidents.json" -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000" \
        || { echo "GET /v1/incidents failed"; return 1; }
}

# Writes the one incident of integration $1 to $TMP/incident.json; exits 1
# unless there is exactly one.
incident_of() { # integration
    fetch_incidents >&2 || return 1
    python3 - "$1" "$TMP/incidents.json" "$TMP/incident.json" <<'EOF'
import json, sys
integ, incs = sys.argv[1], json.load(open(sys.argv[2]))["incidents"]
got = [i for i in incs if i["integration"] == integ]
json.dump(got[0] if len(got) == 1 else None, open(sys.argv[3], "w"))
sys.exit(0 if len(got) == 1 else 1)
EOF
}

# Exits 0 when integration $1 has one incident with status $2 and $3 alerts
# (any if empty) whose title contains $4; prints a summary.
check_incident() { # integration status alerts title-part
    incident_of "$1" || { echo "no single incident from $1"; return 1; }
    python3 - "$2" "$3" "$4" "$TMP/incident.json" <<'EOF'
import json, sys
want, nalerts, title, i = sys.argv[1], sys.argv[2], sys.argv[3], json.load(open(sys.argv[4]))
firing = sum(a["state"] == "firing" for a in i["alerts"].values())
print(f'{i["key"]} {i["integration"]}/{i["service"]} "{i["title"]}" {i["status"]} '
      f'alerts={len(i["alerts"])} firing={firing} events={i["event_count"]}')
ok = i["status"] == want and title in i["title"]
if nalerts:
    ok = ok and len(i["alerts"]) == int(nalerts)
sys.exit(0 if ok else 1)
EOF
}

wait_incident() { # integration status alerts title-part
    if poll check_incident "$@"; then
        pass "$1: incident $2 after $((SECONDS - PHASE_START))s: $POLL_OUT"
        return 0
    fi
    echo "incident now: $POLL_OUT"
    curl -sS -m 10 -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000" | python3 -c '
import json, sys
for i in json.load(sys.stdin)["incidents"]:
    i["alerts"] = "%d alerts" % len(i["alerts"])
    print(json.dumps(i))' | head -n 20 || true
    fail "expected one $2 incident from $1 (alerts: ${3:-any}, title with '$4') within ${POLL_TIMEOUT}s"
}

# The incident id of integration $1.
incident_id() { # integration
    incident_of "$1" && python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/incident.json"
}

# Exits 0 when the recorder holds exactly one page for each incident of the
# integrations given, to alice, and tocsin's outbox for each says one page.
check_pages() { # integration...
    local outboxes="" id
    fetch_incidents || return 1
    curl -fsS -o "$TMP/calls.json" "$RECV/_calls" || { echo "GET $RECV/_calls failed"; return 1; }
    for id in $(python3 -c 'import json, sys; print(*[i["id"] for i in json.load(open(sys.argv[1]))["incidents"]])' "$TMP/incidents.json"); do
        outboxes+="$id $(curl -fsS -m 10 -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents/$id/notifications" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["notifications"]))')"$'\n'
    done
    python3 - "$TMP/incidents.json" "$TMP/calls.json" "$outboxes" "$@" <<'EOF'
import json, sys
incs = json.load(open(sys.argv[1]))["incidents"]
calls = json.load(open(sys.argv[2]))
outbox = dict(l.split() for l in sys.argv[3].splitlines() if l.strip())
integrations = sys.argv[4:]
pages = {}
for c in calls:
    if c["path"] != "/page/alice":
        continue
    body = c.get("body") or {}
    pages.setdefault(str((body.get("incident") or {}).get("id")), []).append(body.get("idempotency_key"))
# Pages name the incident by its key (INC-N); the outbox is by id.
want = {i["key"]: i for i in incs if i["integration"] in integrations}
key_of = {str(i["id"]): i["key"] for i in incs}
print("pages to alice: " + ("; ".join(f"{k}: {len(v)}" for k, v in sorted(pages.items())) or "none")
      + "; outbox entries: " + (", ".join(f"{key_of.get(k, k)}: {v}" for k, v in sorted(outbox.items())) or "none"))
ok = len(want) == len(integrations)
for id_, inc in want.items():
    if len(pages.get(id_, [])) != 1 or outbox.get(str(inc["id"])) != "1":
        ok = False
for id_ in pages:
    if id_ not in {i["key"] for i in incs}:
        print(f"page for an unknown incident {id_}")
        ok = False
sys.exit(0 if ok else 1)
EOF
}

wait_pages() { # integration...
    poll check_pages "$@" || { echo "$POLL_OUT"; fail "expected one page to alice per incident of: $*"; }
    pass "alice was paged once per incident ($*): $POLL_OUT"
}

# The incident's timeline entry types, comma-separated.
timeline_of() { # id
    curl -fsS -m 10 -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents/$1" | python3 -c '
import json, sys
print(",".join(str(e.get("type")) for e in json.load(sys.stdin)["timeline"]))'
}

# Recorder notifications to /am/$1, one JSON object a line.
notifications_to() { # name
    curl -fsS "$RECV/_calls" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c["path"] == "/am/" + sys.argv[1]:
        c.pop("instances", None)
        print(json.dumps(c))' "$1"
}

# --- 3. amtool straight at tocsin ------------------------------------------
log "amtool alert add $DIRECT_ALERT, --alertmanager.url=$TOCSIN/hooks/KEY"
PHASE_START=$SECONDS
if ! amtool --alertmanager.url="$TOCSIN/hooks/$DIRECT_KEY" alert add \
        alertname="$DIRECT_ALERT" severity=critical instance=x \
        --annotation=summary="amtool pushed this straight to tocsin" \
        >"$TMP/amtool-direct.out" 2>&1; then
    cat "$TMP/amtool-direct.out"
    fail "amtool alert add straight at tocsin failed"
fi
pass "amtool alert add exited 0 against tocsin$( [[ -s "$TMP/amtool-direct.out" ]] && echo " (said: $(tr '\n' ' ' <"$TMP/amtool-direct.out"))")"
wait_incident amtool-direct triggered 1 "$DIRECT_ALERT"
wait_pages amtool-direct

# --- 4. Alertmanager ----------------------------------------------------------
trunc_route=""
trunc_receiver=""
if [[ -n "$TRUNC_SUPPORTED" ]]; then
    trunc_route="    - receiver: tocsin-truncated
      matchers: ['alertname=\"$TRUNC_ALERT\"']"
    trunc_receiver="  - name: tocsin-truncated
    webhook_configs:
      - url: $TOCSIN/hooks/$TRUNC_KEY
        send_resolved: true
        max_alerts: $TRUNC_MAX
      - url: $RECV/am/truncated
        send_resolved: true
        max_alerts: $TRUNC_MAX"
fi

write_am_config() {
    cat >"$TMP/alertmanager.yml" <<EOF
global:
  resolve_timeout: 5m
route:
  receiver: tocsin-group
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
$trunc_route
    - receiver: tocsin-group
receivers:
  - name: tocsin-group
    webhook_configs:
      - url: $TOCSIN/hooks/$BIG_KEY
        send_resolved: true
      - url: $RECV/am/group
        send_resolved: true
$trunc_receiver
EOF
}
write_am_config

if [[ -n "$TRUNC_SUPPORTED" ]] && ! amtool check-config "$TMP/alertmanager.yml" >"$TMP/amtool-check.out" 2>&1; then
    if grep -q max_alerts "$TMP/amtool-check.out"; then
        log "this Alertmanager refuses max_alerts: $(tr '\n' ' ' <"$TMP/amtool-check.out")"
        TRUNC_SUPPORTED=""
        trunc_route=""
        trunc_receiver=""
        write_am_config
    fi
fi
amtool check-config "$TMP/alertmanager.yml" >"$TMP/amtool-check.out" 2>&1 \
    || { cat "$TMP/amtool-check.out"; fail "amtool check-config refused the Alertmanager config"; }
[[ -n "$TRUNC_SUPPORTED" ]] || log "SKIP (later): max_alerts is not supported by this Alertmanager"

log "starting alertmanager on $AM"
prometheus-alertmanager \
    --config.file="$TMP/alertmanager.yml" \
    --storage.path="$TMP/am-data" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= \
    --web.external-url="$AM" \
    --log.level=debug \
    >"$TMP/alertmanager.log" 2>&1 &
AM_PID=$!
PIDS+=("$AM_PID")
wait_http alertmanager "$AM/-/ready" "$AM_PID"
WATCH="tocsin:$TOCSIN_PID recorder:$RECV_PID alertmanager:$AM_PID"
pass "alertmanager is ready"

# JSON array of alerts named $1 for instances PREFIX-FROM..PREFIX-TO
# (zero-padded to 4 digits), with endsAt $5 ("" for firing).
alerts_json() { # alertname prefix from to endsAt
    python3 - "$@" <<'EOF'
import json, sys
name, prefix, lo, hi, ends = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
desc = ("Interop filler so that a 1,000-alert notification is well past 512 KiB: "
        + "lorem ipsum dolor sit amet " * 12)[:400]
out = []
for n in range(lo, hi + 1):
    a = {
        "labels": {"alertname": name, "instance": f"{prefix}-{n:04d}", "severity": "warning",
                   "job": "interop"},
        "annotations": {"summary": f"{name} on {prefix}-{n:04d}", "description": desc},
        "generatorURL": "http://127.0.0.1/graph?g0.expr=interop",
    }
    if ends:
        a["endsAt"] = ends
    out.append(a)
print(json.dumps(out))
EOF
}

post_alerts() { # alertname prefix from to endsAt
    local code
    alerts_json "$@" >"$TMP/am-post.json"
    code="$(curl -sS -o "$TMP/am-post.out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data-binary "@$TMP/am-post.json" "$AM/api/v2/alerts")"
    [[ "$code" == 200 ]] || fail "Alertmanager refused the alerts: HTTP $code $(cat "$TMP/am-post.out")"
}

now_utc() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# --- 5. A 1,000-alert group ---------------------------------------------------
log "amtool alert add $BIG_ALERT into alertmanager, then $((BIG_N - 1)) more in one POST"
PHASE_START=$SECONDS
amtool --alertmanager.url="$AM" alert add alertname="$BIG_ALERT" instance="$(printf 'node-%04d' "$BIG_N")" \
    severity=warning job=interop --annotation=summary="$BIG_ALERT on node-$BIG_N (amtool)" \
    >"$TMP/amtool-am.out" 2>&1 || { cat "$TMP/amtool-am.out"; fail "amtool alert add into alertmanager failed"; }
post_alerts "$BIG_ALERT" node 1 $((BIG_N - 1)) ""
[[ "$(amtool --alertmanager.url="$AM" alert query alertname="$BIG_ALERT" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" == "$BIG_N" ]] \
    || fail "alertmanager does not hold $BIG_N $BIG_ALERT alerts (amtool alert query)"
pass "alertmanager holds $BIG_N $BIG_ALERT alerts (amtool alert query)"

wait_incident am-group triggered "$BIG_N" ""
BIG_ID="$(incident_id am-group)"
incident_of am-group || fail "no single incident from am-group"
python3 - "$BIG_N" "$TMP/incident.json" <<'EOF' || fail "the $BIG_N-alert incident is not as expected"
import json, sys
n, i = int(sys.argv[1]), json.load(open(sys.argv[2]))
firing = sum(a["state"] == "firing" for a in i["alerts"].values())
print(f'{i["key"]}: {len(i["alerts"])} alerts, {firing} firing, event_count={i["event_count"]}, dedup_key={i["dedup_key"]}')
assert len(i["alerts"]) == n and firing == n, "alerts"
assert i["event_count"] >= n, "event_count"
EOF
wait_pages amtool-direct am-group
log "notifications alertmanager sent the recorder for the group:"
notifications_to group | sed 's/^/    /'

# Alertmanager's own count: every webhook notification delivered.
check_am_metrics() {
    curl -fsS -o "$TMP/am-metrics.txt" "$AM/metrics" || { echo "GET $AM/metrics failed"; return 1; }
    python3 - "$TMP/am-metrics.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def total(name):
    s = 0.0
    for line in text.splitlines():
        m = re.match(r'^%s\{([^}]*)\}\s+(\S+)' % name, line)
        if m and 'integration="webhook"' in m.group(1):
            s += float(m.group(2))
    return s
sent = total("alertmanager_notifications_total")
failed = total("alertmanager_notifications_failed_total")
req = total("alertmanager_notification_requests_total")
req_failed = total("alertmanager_notification_requests_failed_total")
print(f"alertmanager webhook: notifications={sent:g} failed={failed:g} requests={req:g} requests_failed={req_failed:g}")
sys.exit(0 if sent >= 2 and failed == 0 and req_failed == 0 else 1)
EOF
}
out="$(check_am_metrics)" || { echo "$out"; fail "alertmanager counted failed webhook notifications"; }
pass "$out"

# --- 6. max_alerts ------------------------------------------------------------
if [[ -z "$TRUNC_SUPPORTED" ]]; then
    log "SKIP: max_alerts is not supported by this Alertmanager; part 3 not run"
else
    half=$((TRUNC_N - TRUNC_MAX))
    log "posting $TRUNC_N $TRUNC_ALERT alerts (receiver max_alerts: $TRUNC_MAX)"
    PHASE_START=$SECONDS
    post_alerts "$TRUNC_ALERT" t 1 "$TRUNC_N" ""
    wait_incident am-truncated triggered "$TRUNC_MAX" ""
    TRUNC_ID="$(incident_id am-truncated)"

    log "resolving t-0001..t-$(printf %04d "$half") while $TRUNC_MAX keep firing"
    PHASE_START=$SECONDS
    post_alerts "$TRUNC_ALERT" t 1 "$half" "$(now_utc)"
    # The truncated notification that says "resolved" reached tocsin...
    held() {
        local tl
        tl="$(timeline_of "$TRUNC_ID")" || return 1
        echo "timeline: $tl"
        [[ "$tl" == *resolve_held* ]]
    }
    poll held || { echo "$POLL_OUT"; notifications_to truncated; fail "no resolve_held on $TRUNC_ID after the truncated resolved notification"; }
    pass "tocsin held the resolve after $((SECONDS - PHASE_START))s: $POLL_OUT"
    curl -fsS -m 10 -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents/$TRUNC_ID" | python3 -c '
import json, sys
held = [e for e in json.load(sys.stdin)["timeline"] if e.get("type") == "resolve_held"]
print("resolve_held entries: " + json.dumps(held))'
    notifications_to truncated >"$TMP/trunc-notifications.jsonl"
    python3 - "$TRUNC_MAX" "$half" "$TMP/trunc-notifications.jsonl" <<'EOF' || fail "alertmanager sent no truncated notification saying resolved"
import json, sys
mx, left, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ns = [json.loads(l) for l in open(path)]
hit = [n for n in ns if n["status"] == "resolved" and n["truncated"] == left and n["alerts"] == mx]
print(f"{len(hit)} notification(s) of {mx} resolved alerts with truncatedAlerts={left} and status resolved")
sys.exit(0 if hit else 1)
EOF
    # ...and the incident stays open while alerts still fire.
    sleep 3
    out="$(check_incident am-truncated triggered "" "")" \
        || { echo "$out"; fail "$TRUNC_ID left triggered while $TRUNC_MAX alerts still fire"; }
    pass "still triggered 3s later, $TRUNC_MAX alerts firing in alertmanager (those tocsin was shown all resolved, $half left out): $out"

    log "resolving the last $TRUNC_MAX"
    PHASE_START=$SECONDS
    post_alerts "$TRUNC_ALERT" t $((half + 1)) "$TRUNC_N" "$(now_utc)"
    wait_incident am-truncated resolved "" ""
    log "timeline of $TRUNC_ID: $(timeline_of "$TRUNC_ID")"
    log "notifications alertmanager sent the recorder for $TRUNC_ALERT:"
    notifications_to truncated | sed 's/^/    /'
    wait_pages amtool-direct am-group am-truncated
fi

# --- 7. Nothing paged twice, nothing failed --------------------------------
sleep 2
if [[ -n "$TRUNC_SUPPORTED" ]]; then
    out="$(check_pages amtool-direct am-group am-truncated)" || { echo "$out"; fail "pages changed"; }
else
    out="$(check_pages amtool-direct am-group)" || { echo "$out"; fail "pages changed"; }
fi
pass "still one page per incident: $out"
out="$(check_am_metrics)" || { echo "$out"; fail "alertmanager counted failed webhook notifications"; }
pass "$out"
out="$(check_incident am-group triggered "$BIG_N" "")" || { echo "$out"; fail "the $BIG_N-alert incident changed"; }
pass "the $BIG_N-alert incident is still one incident: $out"

if grep -Eiq 'level=(error|warn)' "$TMP/alertmanager.log"; then
    echo "note: alertmanager logged warnings/errors:"
    grep -Ei 'level=(error|warn)' "$TMP/alertmanager.log" | tail -n 10
fi

pass "amtool interop ($((SECONDS - START_SECONDS))s)"
