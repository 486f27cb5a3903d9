#!/usr/bin/env bash
# Interop test: a real Prometheus Alertmanager notifies tocsin through both a
# webhook receiver (Authorization: Bearer KEY on /hooks) and a pagerduty
# receiver (Events v2 on /v2/enqueue). Checks that one alert group becomes one
# incident per integration, that both resolve when the alerts resolve, and
# that Alertmanager counted every notification as delivered.
#
# Usage: tests/interop/alertmanager.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (configs, logs, data)
#   POLL_TIMEOUT=30              seconds to wait for each expected state
# Needs: curl, python3, prometheus-alertmanager (installed with apt-get if
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

# Two distinct free ports, chosen by the kernel.
read -r TOCSIN_PORT AM_PORT < <(free_ports 2)
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

[[services]]
name = "pay"
description = "Alerts from Alertmanager's pagerduty receiver"

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
    json="$(curl -fsS "$TOCSIN/v1/incidents?limit=1000")" || { echo "GET /v1/incidents failed"; return 1; }
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
    local want="$1" deadline=$((SECONDS + POLL_TIMEOUT)) out
    while :; do
        if out="$(check_incidents "$want")"; then
            pass "both incidents $want after $((SECONDS - PHASE_START))s: $out"
            return 0
        fi
        kill -0 "$TOCSIN_PID" 2>/dev/null || fail "tocsin died"
        kill -0 "$AM_PID" 2>/dev/null || fail "alertmanager died"
        if ((SECONDS >= deadline)); then
            echo "incidents now: $out"
            curl -sS "$TOCSIN/v1/incidents?limit=1000" | python3 -m json.tool | head -n 120 || true
            fail "expected one $want incident per integration within ${POLL_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

log "posting two firing alerts to alertmanager"
PHASE_START=$SECONDS
post_alerts ""
wait_incidents triggered

# The webhook incident's dedup key is Alertmanager's groupKey.
WEB_DEDUP="$(curl -fsS "$TOCSIN/v1/incidents?status=triggered" | python3 -c '
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
for id in $(curl -fsS "$TOCSIN/v1/incidents?status=resolved" \
        | python3 -c 'import json,sys; print(*[i["id"] for i in json.load(sys.stdin)["incidents"]])'); do
    curl -fsS "$TOCSIN/v1/incidents/$id" | python3 -c '
import json, sys
b = json.load(sys.stdin)
inc, tl = b["incident"], b["timeline"]
assert inc["status"] == "resolved", inc["status"]
assert tl, "empty timeline"
assert tl[-1].get("type") == "resolved", tl[-1]
print(inc["key"] + " timeline: " + ", ".join(str(e.get("type")) for e in tl))
' || fail "timeline of incident $id"
done

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
