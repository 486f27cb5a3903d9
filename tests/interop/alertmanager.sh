#!/usr/bin/env bash
# Interop test: a real Prometheus Alertmanager notifies tocsin through both a
# webhook receiver (Authorization: Bearer KEY on /hooks) and a pagerduty
# receiver (Events v2 on /v2/enqueue). Checks that one alert group becomes one
# incident per integration, that both resolve when the alerts resolve, that
# the on-call user of the services' schedule is paged once per incident by
# Slack DM (the tests' fake Slack Web API, run as examples/fake_slack.rs,
# records it; it answers the first chat.postMessage with a 429 so the retry
# is part of the test), and that Alertmanager counted every notification as
# delivered.
#
# Usage: tests/interop/alertmanager.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (configs, logs, data)
#   POLL_TIMEOUT=30              seconds to wait for each expected state
#   FAKE_SLACK_BIN=/path         use this build of examples/fake_slack.rs
# Needs: curl, python3, cargo (for the fake Slack), prometheus-alertmanager (installed with apt-get if
# missing and we are root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POLL_TIMEOUT="${POLL_TIMEOUT:-30}"
START_SECONDS=$SECONDS

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# --- 1. Alertmanager -------------------------------------------------------
need_command prometheus-alertmanager prometheus-alertmanager
log "$(prometheus-alertmanager --version 2>&1 | head -n 1)"

# --- 2. tocsin -------------------------------------------------------------
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-am.XXXXXX")"

# Three distinct free ports, chosen by the kernel.
read -r TOCSIN_PORT AM_PORT SLACK_PORT < <(free_ports 3)
SLACK="http://127.0.0.1:$SLACK_PORT"
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
AM="http://127.0.0.1:$AM_PORT"
WEBHOOK_KEY="interop-am-webhook-key-$RANDOM$RANDOM"
PD_KEY="interop-am-pagerduty-key-$RANDOM$RANDOM"

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
name = "web"
description = "Alerts from Alertmanager's webhook receiver"
escalation_policy = "page-oncall"

[[services]]
name = "pay"
description = "Alerts from Alertmanager's pagerduty receiver"
escalation_policy = "page-oncall"

# Paging by Slack DM, through slack-morphism, to the fake Slack Web API.
[slack]
bot_token = "xoxb-interop-token"
signing_secret = "interop-signing-secret"
team_id = "T0INTEROP"
api_url = "$SLACK/api"

[notify]
initial_backoff = "200ms"
max_backoff = "2s"

[[users]]
name = "alice"
slack_id = "U0ALICE"
contact_methods = [{ kind = "slack" }]

[[users]]
name = "bob"
slack_id = "U0BOB"
contact_methods = [{ kind = "slack" }]

# A daily rotation: whoever it gives is the one to be paged.
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "daily"
users = ["alice", "bob"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * *"

[[escalation_policies]]
name = "page-oncall"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }]
delay = "10m"

[[integrations]]
name = "am-webhook"
kind = "alertmanager"
key = "$WEBHOOK_KEY"
service = "web"

[[integrations]]
name = "am-pagerduty"
kind = "pagerduty"
key = "$PD_KEY"
service = "pay"
EOF

# Environment overrides (TOCSIN__*) would change the config under test.

FAKE_SLACK_BIN="${FAKE_SLACK_BIN:-$(example_bin fake_slack)}"
log "starting the fake Slack Web API on $SLACK"
"$FAKE_SLACK_BIN" "$SLACK_PORT" --rate-limit-first-post >"$TMP/fake_slack.log" 2>&1 &
SLACK_PID=$!
PIDS+=("$SLACK_PID")
wait_http "fake Slack" "$SLACK/_calls" "$SLACK_PID"

start_tocsin "$TOCSIN"

pass "tocsin is ready: $(curl -fsS "$TOCSIN/readyz")"

# --- 3. Alertmanager config and start -------------------------------------
cat >"$TMP/alertmanager.yml" <<EOF
global:
  resolve_timeout: 5m
route:
  receiver: tocsin-webhook
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: tocsin-webhook
      continue: true
    - receiver: tocsin-pagerduty
receivers:
  - name: tocsin-webhook
    webhook_configs:
      - url: $TOCSIN/hooks
        send_resolved: true
        http_config:
          authorization:
            credentials: $WEBHOOK_KEY
  - name: tocsin-pagerduty
    pagerduty_configs:
      - url: $TOCSIN/v2/enqueue
        routing_key: $PD_KEY
        send_resolved: true
EOF

if command -v amtool >/dev/null; then
    amtool check-config "$TMP/alertmanager.yml" >"$TMP/amtool.log" 2>&1 \
        || { cat "$TMP/amtool.log"; fail "amtool check-config refused the Alertmanager config"; }
fi

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
WATCH="tocsin:$TOCSIN_PID alertmanager:$AM_PID fake-Slack:$SLACK_PID"
pass "alertmanager is ready"

# --- 4. Fire, check, resolve, check ---------------------------------------
alerts_json() { # endsAt ("" for firing)
    python3 - "$1" <<'EOF'
import json, sys
ends = sys.argv[1]
alerts = []
for inst in ("a", "b"):
    a = {
        "labels": {"alertname": "InteropHighErrorRate", "service": "api",
                   "instance": inst, "severity": "critical"},
        "annotations": {"summary": "API error rate above 5% (interop test)"},
        "generatorURL": "http://127.0.0.1/graph?g0.expr=interop",
    }
    if ends:
        a["endsAt"] = ends
    alerts.append(a)
print(json.dumps(alerts))
EOF
}

post_alerts() { # endsAt
    local body code
    body="$(alerts_json "$1")"
    code="$(curl -sS -o "$TMP/am-post.out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data "$body" "$AM/api/v2/alerts")"
    [[ "$code" == 200 ]] || fail "Alertmanager refused the alerts: HTTP $code $(cat "$TMP/am-post.out")"
}

# Prints a one-line summary of tocsin's incidents and exits 0 when the
# expected state ($1: triggered|resolved) holds for both integrations.
check_incidents() { # want
    local json
    json="$(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000")" || { echo "GET /v1/incidents failed"; return 1; }
    python3 - "$1" "$json" <<'EOF'
import json, sys
want, body = sys.argv[1], json.loads(sys.argv[2])
incs = body["incidents"]
by_int = {}
for i in incs:
    by_int.setdefault(i["integration"], []).append(i)
desc = "; ".join(
    f'{i["key"]} {i["integration"]}/{i["service"]} {i["status"]} {i["severity"]} alerts={len(i["alerts"])}'
    for i in incs) or "no incidents"
print(desc)
ok = True
for integ, svc, nalerts in (("am-webhook", "web", 2), ("am-pagerduty", "pay", None)):
    got = by_int.get(integ, [])
    if len(got) != 1:
        ok = False
        continue
    i = got[0]
    if i["service"] != svc or i["status"] != want:
        ok = False
    if nalerts is not None and len(i["alerts"]) != nalerts:
        ok = False
ok = ok and len(incs) == 2
sys.exit(0 if ok else 1)
EOF
}

wait_incidents() { # want
    if poll check_incidents "$1"; then
        pass "both incidents $1 after $((SECONDS - PHASE_START))s: $POLL_OUT"
        return 0
    fi
    echo "incidents now: $POLL_OUT"
    curl -sS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000" | python3 -m json.tool | head -n 120 || true
    fail "expected one $1 incident per integration within ${POLL_TIMEOUT}s"
}

# Prints who of alice and bob is on call in "primary" now.
oncall_user() {
    curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/oncall" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["oncall"]:
    if s["schedule"] == "primary":
        print(s["on_call"]["user"])'
}

# Checks the fake Slack's record: every incident paged exactly once, by DM
# to the on-call user ($1, or $2 if the rotation handed off meanwhile), with
# the bot token, and the 429 on the first post was answered by a retry.
# Exit 0 when it holds.
check_pages() { # oncall-before oncall-after
    local incidents calls
    incidents="$(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000")" || { echo "GET /v1/incidents failed"; return 1; }
    calls="$(curl -fsS "$SLACK/_calls")" || { echo "GET $SLACK/_calls failed"; return 1; }
    python3 - "$1" "$2" "$incidents" "$calls" <<'EOF'
import json, sys
before, after = sys.argv[1], sys.argv[2]
incs = [i["key"] for i in json.loads(sys.argv[3])["incidents"]]
calls = json.loads(sys.argv[4])
slack_ids = {"alice": "U0ALICE", "bob": "U0BOB"}
posts = [c for c in calls if c["method"] == "chat.postMessage"]
limited = [c for c in posts if c["status"] == 429]
bad_auth = [c for c in calls if c["authorization"] != "Bearer xoxb-interop-token"]
pages = {}
for c in posts:
    if c["status"] != 200 or "__error" in c["params"] \
            or not str(c["params"].get("channel", "")).startswith("D"):
        continue
    md = c["params"].get("metadata") or {}
    if isinstance(md, str):
        md = json.loads(md)
    key = (md.get("event_payload") or {}).get("idempotency_key", "")
    if md.get("event_type") != "tocsin_page" or not key:
        continue
    pages.setdefault(key.split("/")[0], []).append((key, c["params"]["channel"]))
print("pages by DM: " + ("; ".join(f"{k}: {v}" for k, v in sorted(pages.items())) or "none")
      + f"; chat.postMessage 429s retried: {len(limited)}")
if bad_auth:
    print(f"{len(bad_auth)} calls without the bot token: {bad_auth[0]}")
ok = len(incs) == 2 and sorted(pages) == sorted(incs) and len(limited) == 1 and not bad_auth
for key, sent in pages.items():
    if len(sent) != 1:
        print(f"{key} was paged {len(sent)} times")
        ok = False
    elif sent[0][1] not in ("D" + slack_ids[before], "D" + slack_ids[after]):
        print(f"{key} paged {sent[0][1]}, but {before} is on call")
        ok = False
sys.exit(0 if ok else 1)
EOF
}

# check_pages with whoever is on call now as the second name.
check_pages_now() { # oncall-before
    check_pages "$1" "$(oncall_user)"
}

wait_pages() { # oncall-before
    poll check_pages_now "$1" || { echo "$POLL_OUT"; fail "expected one Slack DM page per incident within ${POLL_TIMEOUT}s"; }
    pass "the on-call user ($1) was paged once per incident by Slack DM: $POLL_OUT"
}

ONCALL="$(oncall_user)"
[[ "$ONCALL" == alice || "$ONCALL" == bob ]] || fail "GET /v1/oncall: no one on call in primary ($ONCALL)"
log "on call in primary: $ONCALL"

log "posting two firing alerts to alertmanager"
PHASE_START=$SECONDS
post_alerts ""
wait_incidents triggered
wait_pages "$ONCALL"

# The webhook incident's dedup key is Alertmanager's groupKey.
WEB_DEDUP="$(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?status=triggered" | python3 -c '
import json, sys
for i in json.load(sys.stdin)["incidents"]:
    if i["integration"] == "am-webhook":
        print(i["dedup_key"])')"
[[ "$WEB_DEDUP" == *'alertname="InteropHighErrorRate"'*'service="api"'* ]] \
    || fail "webhook incident's dedup_key is not the group key: $WEB_DEDUP"
pass "webhook incident is keyed by the group key: $WEB_DEDUP"

log "posting the same alerts resolved (endsAt = now)"
PHASE_START=$SECONDS
post_alerts "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
wait_incidents resolved

# Each resolved incident's timeline ends with its resolution.
for id in $(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?status=resolved" \
        | python3 -c 'import json,sys; print(*[i["id"] for i in json.load(sys.stdin)["incidents"]])'); do
    curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents/$id" | python3 -c '
import json, sys
b = json.load(sys.stdin)
inc, tl = b["incident"], b["timeline"]
assert inc["status"] == "resolved", inc["status"]
assert tl, "empty timeline"
assert tl[-1].get("type") == "resolved", tl[-1]
print(inc["key"] + " timeline: " + ", ".join(str(e.get("type")) for e in tl))
' || fail "timeline of incident $id"
done

# Resolving pages nobody, and nothing was paged twice.
sleep 2
out="$(check_pages_now "$ONCALL")" || { echo "$out"; fail "pages changed after the incidents resolved"; }
pass "still one page per incident after resolve: $out"

# --- Alertmanager's own view: every notification delivered ---------------
METRICS="$(curl -fsS "$AM/metrics")" || fail "GET $AM/metrics failed"
python3 - "$METRICS" <<'EOF' || fail "Alertmanager reported failed or missing notifications"
import re, sys
text = sys.argv[1]
def total(name, integration):
    s = 0.0
    for line in text.splitlines():
        m = re.match(r'^%s\{([^}]*)\}\s+(\S+)' % name, line)
        if m and re.search(r'integration="%s"' % integration, m.group(1)):
            s += float(m.group(2))
    return s
ok = True
for integ in ("webhook", "pagerduty"):
    req = total("alertmanager_notification_requests_total", integ)
    failed = total("alertmanager_notification_requests_failed_total", integ)
    good = req - failed
    print(f"alertmanager {integ}: requests={req:g} failed={failed:g} succeeded={good:g}")
    if good < 2 or failed > 0:
        ok = False
sys.exit(0 if ok else 1)
EOF
pass "alertmanager delivered every notification to tocsin"

if grep -Eiq 'level=(error|warn)' "$TMP/alertmanager.log"; then
    echo "note: alertmanager logged warnings/errors:"
    grep -Ei 'level=(error|warn)' "$TMP/alertmanager.log" | tail -n 10
fi

pass "alertmanager interop ($((SECONDS - START_SECONDS))s)"
